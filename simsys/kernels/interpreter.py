"""One compiled interpreter that samples any structural causal model.

Every scenario -- whatever its nodes, formulas, parameters and biases -- is compiled by
``simsys.program`` into the same three arrays: a bytecode table ``code`` (one row per instruction:
opcode, destination register, operands), a table of 64-bit stream keys ``keys`` (one per random
instruction) and a float64 constant table ``consts``. The kernel :func:`_run_program` below executes
that bytecode column-at-a-time over blocks of rows held in a small register file. Because the
graph is *data*, numba compiles this module once (and caches it across processes): changing a
number, a formula or the whole graph never triggers a recompile.

Randomness is counter-based: the uniform of random instruction ``j`` for patient ``r`` is a keyed
hash of ``(keys[j], r)`` (two rounds of the SplitMix64 finaliser, the second keyed again, so that
streams with different keys are unrelated). A value therefore depends only on the patient's index,
never on block size, chunking or thread count, and a node's draws do not move when another node is
added or changed (common random numbers across the cells of a sweep). The keys themselves come from
``numpy.random.SeedSequence`` (see ``simsys.program``).

Speed notes (measured, see ``../shared/performance-notes.md`` and ``benchmarks/sample_speed.py``):
each opcode is a simple loop that LLVM vectorises; ``fastmath`` stays off so the vectorised and
remainder iterations give bit-identical results (block-size independence); ``error_model='numpy'``
lifts the division check that blocks vectorisation; ``exp`` is a polynomial written in plain
arithmetic so it vectorises too (numba's scalar ``exp`` does not); normal draws use a 256-layer
ziggurat whose branch-free first try vectorises, with a scalar pass for the ~1% rejected rows.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath=False)

# --- opcodes --------------------------------------------------------------------------------------
# Operands: ``a``, ``b``, ``c`` are registers unless the opcode's name ends in C (then ``b`` or ``c``
# is an index into ``consts``). Instruction layout: code[j] = (op, dst, a, b, c).
OP_SETC, OP_COPY, OP_SCALE, OP_ADDC, OP_AXPY = 0, 1, 2, 3, 4  # d=k; d=a; d=k*a; d=a+k; d+=k*a
OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW = 5, 6, 7, 8, 9
OP_POWC, OP_RPOWC, OP_RDIVC = 10, 11, 12  # a**k, k**a, k/a
OP_LT, OP_LE, OP_GT, OP_GE, OP_EQ, OP_NE = 13, 14, 15, 16, 17, 18
OP_LTC, OP_LEC, OP_GTC, OP_GEC, OP_EQC, OP_NEC = 19, 20, 21, 22, 23, 24
OP_AND, OP_OR, OP_NOT, OP_WHERE = 25, 26, 27, 28
OP_EXP, OP_LOG, OP_SQRT, OP_ABS, OP_LOGISTIC = 29, 30, 31, 32, 33
OP_MIN, OP_MAX, OP_MINC, OP_MAXC = 34, 35, 36, 37
OP_LOAD = 38  # d = inputs[a] (an intervention or counterfactual value given per row)
OP_BERN = 40  # d = 1[u < a]
OP_BERNL = 41  # d = 1[u < logistic(a)]
OP_NORM = 42  # d = a + b * z
OP_NORMC = 43  # d = a + k * z   (k = consts[b])
OP_UNIF = 44  # d = a + (b - a) * u
OP_POIS = 45  # d ~ Poisson(a)
OP_CAT = 46  # d = category drawn with weights in registers a .. a+c-1 (c categories)
OP_UNIFORM01 = 47  # d = u (the raw uniform; used by bias mechanisms)

# --- the keyed counter-based generator --------------------------------------------------------
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_ALT = np.uint64(0xD1B54A32D192ED03)
_S8 = np.uint64(8)
_S9 = np.uint64(9)
_S11 = np.uint64(11)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)
_MASK8 = np.uint64(0xFF)
_MASK1 = np.uint64(1)
_MASK52 = np.uint64(0x000FFFFFFFFFFFFF)
_TWO_M53 = 1.0 / 9007199254740992.0

# --- exp in plain arithmetic (vectorisable) -----------------------------------------------------
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_EXP_LO = -708.0
_EXP_HI = 709.0


@njit(**_JIT)
def _mix(z):
    """SplitMix64's finaliser (Steele, Lea & Flood 2014): a bijective 64-bit avalanche."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(**_JIT)
def _hash(key, ctr):
    """64 random bits for (stream ``key``, patient ``ctr``): two keyed finaliser rounds."""
    return _mix(_mix((ctr * _GOLDEN) ^ key) + key)


@njit(**_JIT)
def _uniform(key, ctr):
    """A uniform in [0, 1) with 53 random bits."""
    return np.float64(np.int64(_hash(key, ctr) >> _S11)) * _TWO_M53


@njit(**_JIT)
def _exp_parts(x, out_poly, out_bits, n):
    """Split exp(x) = poly(r) * 2**k for n elements: poly into out_poly, 2**k's bits into out_bits.

    Range reduction by ln 2 (Cody-Waite, two-part constant) and a degree-11 Taylor polynomial on
    |r| <= ln(2)/2 (relative error below 1e-14). x is clamped to [-708, 709] so 2**k stays a normal
    double; NaN propagates.
    """
    for i in range(n):
        xi = x[i]
        t = min(max(xi, _EXP_LO), _EXP_HI)
        kf = np.floor(t * _LOG2E + 0.5)
        r = (t - kf * _LN2_HI) - kf * _LN2_LO
        p = 1.0 + r * (1.0 + r * (0.5 + r * (1.6666666666666666e-01 + r * (
            4.1666666666666664e-02 + r * (8.3333333333333332e-03 + r * (
                1.3888888888888889e-03 + r * (1.9841269841269841e-04 + r * (
                    2.4801587301587302e-05 + r * (2.7557319223985893e-06 + r * (
                        2.7557319223985888e-07 + r * 2.5052108385441720e-08))))))))))
        out_poly[i] = p if xi == xi else xi
        out_bits[i] = (np.int64(kf) + 1023) << 52


@njit(**_JIT)
def _normal_slow(key, ctr, zk, zw, zf):
    """The full ziggurat (Marsaglia & Tsang 2000; 256 layers as in NumPy) for one patient.

    Attempt 0 uses the same 64 bits as the vectorised first try, so this returns what the fast path
    would have returned had it accepted; later attempts and the wedge/tail uniforms come from
    derived keys, so the result is still a pure function of (key, ctr).
    """
    r_tail = 3.6541528853610088
    attempt = np.uint64(0)
    while True:
        h = _hash(key + attempt * _ALT, ctr)
        idx = np.int64(h & _MASK8)
        sign = np.int64((h >> _S8) & _MASK1)
        rabs = np.int64((h >> _S9) & _MASK52)
        x = rabs * zw[idx]
        if sign == 1:
            x = -x
        if rabs < zk[idx]:
            return x
        if idx == 0:
            sub = np.uint64(1)
            while True:
                u1 = _uniform(key + attempt * _ALT + sub * _GOLDEN, ctr)
                u2 = _uniform(key + attempt * _ALT + (sub + np.uint64(1)) * _GOLDEN, ctr)
                xx = -math.log1p(-u1) / r_tail
                yy = -math.log1p(-u2)
                if yy + yy > xx * xx:
                    return -(r_tail + xx) if sign == 1 else r_tail + xx
                sub += np.uint64(2)
        else:
            u = _uniform(key + attempt * _ALT + _GOLDEN, ctr)
            if (zf[idx - 1] - zf[idx]) * u + zf[idx] < math.exp(-0.5 * x * x):
                return x
        attempt += np.uint64(1)


@njit(**_JIT)
def _standard_normal(key, ctr, n, out, flag, zk, zw, zf):
    """Standard normals for n patients: vectorised ziggurat first try, scalar pass for the rest."""
    for i in range(n):
        h = _hash(key, ctr[i])
        idx = np.int64(h & _MASK8)
        sign = np.int64((h >> _S8) & _MASK1)
        rabs = np.int64((h >> _S9) & _MASK52)
        x = rabs * zw[idx]
        out[i] = x - 2.0 * sign * x
        flag[i] = rabs >= zk[idx]
    for i in range(n):
        if flag[i]:
            out[i] = _normal_slow(key, ctr[i], zk, zw, zf)


@njit(**_JIT)
def _poisson(key, ctr, lam):
    """One Poisson(lam) draw: inversion for lam < 10, PTRS (Hormann 1993) above, as NumPy does."""
    if not (lam > 0.0):
        return 0.0 if lam == 0.0 else np.nan
    sub = np.uint64(1)
    if lam < 10.0:
        enlam = math.exp(-lam)
        x = 0.0
        prod = 1.0
        while True:
            prod *= _uniform(key + sub * _GOLDEN, ctr)
            sub += np.uint64(1)
            if prod <= enlam:
                return x
            x += 1.0
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
    while True:
        U = _uniform(key + sub * _GOLDEN, ctr) - 0.5
        V = _uniform(key + (sub + np.uint64(1)) * _GOLDEN, ctr)
        sub += np.uint64(2)
        us = 0.5 - abs(U)
        k = math.floor((2.0 * a / us + b) * U + lam + 0.43)
        if us >= 0.07 and V <= vr:
            return k
        if k < 0.0 or (us < 0.013 and V > us):
            continue
        if (math.log(V) + math.log(invalpha) - math.log(a / (us * us) + b)) <= (
            -lam + k * loglam - math.lgamma(k + 1.0)
        ):
            return k


@njit(**_JIT)
def _run_program(code, keys, consts, n_regs, ctr0, row_ids, inputs, store_reg, store_kind,
                 store_row, out_f, out_u, start, stop, block, zk, zw, zf):
    """Execute the bytecode for rows ``start:stop`` of the output arrays.

    Parameters
    ----------
    code : int64[n_instr, 5]   (op, dst, a, b, c) per instruction
    keys : uint64[n_instr]     stream key of each random instruction (unused by others)
    consts : float64[n_const]  the constant table (params and folded sub-expressions)
    n_regs : int               registers in the file (nodes first, then temporaries)
    ctr0 : int                 patient index of output row 0 (used when ``row_ids`` is empty)
    row_ids : int64[N] or [0]  explicit patient indices (counterfactuals of a filtered cohort)
    inputs : float64[n_in, N]  per-row values for OP_LOAD (interventions given as data)
    store_reg, store_kind, store_row : int64[n_store]
        register -> output column: kind 0 writes ``out_f[row]``, kind 1 ``out_u[row]`` (uint8).
    out_f : float64[n_f, N];  out_u : uint8[n_u, N]
    block : int                rows per block (results do not depend on it)
    zk, zw, zf : the ziggurat tables (see ``simsys.program.ZIGGURAT``)
    """
    regs = np.empty((n_regs, block), dtype=np.float64)
    bits = np.empty(block, dtype=np.int64)
    poly = np.empty(block, dtype=np.float64)
    ctr = np.empty(block, dtype=np.uint64)
    flag = np.empty(block, dtype=np.bool_)
    scale = bits.view(np.float64)
    n_instr = code.shape[0]
    use_ids = row_ids.shape[0] > 0
    for b0 in range(start, stop, block):
        m = min(block, stop - b0)
        if use_ids:
            for i in range(m):
                ctr[i] = np.uint64(row_ids[b0 + i])
        else:
            for i in range(m):
                ctr[i] = np.uint64(ctr0 + b0 + i)
        for j in range(n_instr):
            op = code[j, 0]
            d = regs[code[j, 1]]
            ia = code[j, 2]
            ib = code[j, 3]
            ic = code[j, 4]
            if op == OP_SETC:
                k = consts[ia]
                for i in range(m):
                    d[i] = k
            elif op == OP_COPY:
                x = regs[ia]
                for i in range(m):
                    d[i] = x[i]
            elif op == OP_SCALE:
                x = regs[ia]
                k = consts[ib]
                for i in range(m):
                    d[i] = k * x[i]
            elif op == OP_ADDC:
                x = regs[ia]
                k = consts[ib]
                for i in range(m):
                    d[i] = x[i] + k
            elif op == OP_AXPY:
                x = regs[ia]
                k = consts[ib]
                for i in range(m):
                    d[i] += k * x[i]
            elif op <= OP_POW:
                x = regs[ia]
                y = regs[ib]
                if op == OP_ADD:
                    for i in range(m):
                        d[i] = x[i] + y[i]
                elif op == OP_SUB:
                    for i in range(m):
                        d[i] = x[i] - y[i]
                elif op == OP_MUL:
                    for i in range(m):
                        d[i] = x[i] * y[i]
                elif op == OP_DIV:
                    for i in range(m):
                        d[i] = x[i] / y[i]
                else:
                    for i in range(m):
                        d[i] = x[i] ** y[i]
            elif op == OP_POWC:
                x = regs[ia]
                k = consts[ib]
                if k == 2.0:
                    for i in range(m):
                        d[i] = x[i] * x[i]
                else:
                    for i in range(m):
                        d[i] = x[i] ** k
            elif op == OP_RPOWC:
                x = regs[ia]
                k = consts[ib]
                for i in range(m):
                    d[i] = k ** x[i]
            elif op == OP_RDIVC:
                x = regs[ia]
                k = consts[ib]
                for i in range(m):
                    d[i] = k / x[i]
            elif op <= OP_NE:
                x = regs[ia]
                y = regs[ib]
                if op == OP_LT:
                    for i in range(m):
                        d[i] = 1.0 if x[i] < y[i] else 0.0
                elif op == OP_LE:
                    for i in range(m):
                        d[i] = 1.0 if x[i] <= y[i] else 0.0
                elif op == OP_GT:
                    for i in range(m):
                        d[i] = 1.0 if x[i] > y[i] else 0.0
                elif op == OP_GE:
                    for i in range(m):
                        d[i] = 1.0 if x[i] >= y[i] else 0.0
                elif op == OP_EQ:
                    for i in range(m):
                        d[i] = 1.0 if x[i] == y[i] else 0.0
                else:
                    for i in range(m):
                        d[i] = 1.0 if x[i] != y[i] else 0.0
            elif op <= OP_NEC:
                x = regs[ia]
                k = consts[ib]
                if op == OP_LTC:
                    for i in range(m):
                        d[i] = 1.0 if x[i] < k else 0.0
                elif op == OP_LEC:
                    for i in range(m):
                        d[i] = 1.0 if x[i] <= k else 0.0
                elif op == OP_GTC:
                    for i in range(m):
                        d[i] = 1.0 if x[i] > k else 0.0
                elif op == OP_GEC:
                    for i in range(m):
                        d[i] = 1.0 if x[i] >= k else 0.0
                elif op == OP_EQC:
                    for i in range(m):
                        d[i] = 1.0 if x[i] == k else 0.0
                else:
                    for i in range(m):
                        d[i] = 1.0 if x[i] != k else 0.0
            elif op == OP_AND:
                x = regs[ia]
                y = regs[ib]
                for i in range(m):
                    d[i] = 1.0 if (x[i] != 0.0 and y[i] != 0.0) else 0.0
            elif op == OP_OR:
                x = regs[ia]
                y = regs[ib]
                for i in range(m):
                    d[i] = 1.0 if (x[i] != 0.0 or y[i] != 0.0) else 0.0
            elif op == OP_NOT:
                x = regs[ia]
                for i in range(m):
                    d[i] = 1.0 if x[i] == 0.0 else 0.0
            elif op == OP_WHERE:
                x = regs[ia]
                y = regs[ib]
                z = regs[ic]
                for i in range(m):
                    d[i] = y[i] if x[i] != 0.0 else z[i]
            elif op == OP_EXP:
                _exp_parts(regs[ia], d, bits, m)
                for i in range(m):
                    d[i] *= scale[i]
            elif op == OP_LOG:
                x = regs[ia]
                for i in range(m):
                    d[i] = np.log(x[i])
            elif op == OP_SQRT:
                x = regs[ia]
                for i in range(m):
                    d[i] = np.sqrt(x[i])
            elif op == OP_ABS:
                x = regs[ia]
                for i in range(m):
                    d[i] = abs(x[i])
            elif op == OP_LOGISTIC:
                x = regs[ia]
                for i in range(m):
                    poly[i] = -x[i]
                _exp_parts(poly, poly, bits, m)
                for i in range(m):
                    d[i] = 1.0 / (1.0 + poly[i] * scale[i])
            elif op == OP_MIN or op == OP_MAX:
                x = regs[ia]
                y = regs[ib]
                if op == OP_MIN:  # NaN-propagating, as numpy.minimum
                    for i in range(m):
                        d[i] = x[i] if (x[i] <= y[i] or x[i] != x[i]) else y[i]
                else:
                    for i in range(m):
                        d[i] = x[i] if (x[i] >= y[i] or x[i] != x[i]) else y[i]
            elif op == OP_MINC or op == OP_MAXC:
                x = regs[ia]
                k = consts[ib]
                if op == OP_MINC:
                    for i in range(m):
                        d[i] = x[i] if (x[i] <= k or x[i] != x[i]) else k
                else:
                    for i in range(m):
                        d[i] = x[i] if (x[i] >= k or x[i] != x[i]) else k
            elif op == OP_LOAD:
                for i in range(m):
                    d[i] = inputs[ia, b0 + i]
            elif op == OP_BERN:
                key = keys[j]
                x = regs[ia]
                for i in range(m):
                    u = np.float64(np.int64(_hash(key, ctr[i]) >> _S11)) * _TWO_M53
                    d[i] = 1.0 if u < x[i] else 0.0
            elif op == OP_BERNL:
                key = keys[j]
                x = regs[ia]
                for i in range(m):
                    poly[i] = -x[i]
                _exp_parts(poly, poly, bits, m)
                for i in range(m):
                    u = np.float64(np.int64(_hash(key, ctr[i]) >> _S11)) * _TWO_M53
                    d[i] = 1.0 if u * (1.0 + poly[i] * scale[i]) < 1.0 else 0.0
            elif op == OP_NORM or op == OP_NORMC:
                _standard_normal(keys[j], ctr, m, poly, flag, zk, zw, zf)
                x = regs[ia]
                if op == OP_NORM:
                    y = regs[ib]
                    for i in range(m):
                        d[i] = x[i] + y[i] * poly[i]
                else:
                    k = consts[ib]
                    for i in range(m):
                        d[i] = x[i] + k * poly[i]
            elif op == OP_UNIF or op == OP_UNIFORM01:
                key = keys[j]
                if op == OP_UNIFORM01:
                    for i in range(m):
                        d[i] = np.float64(np.int64(_hash(key, ctr[i]) >> _S11)) * _TWO_M53
                else:
                    x = regs[ia]
                    y = regs[ib]
                    for i in range(m):
                        u = np.float64(np.int64(_hash(key, ctr[i]) >> _S11)) * _TWO_M53
                        d[i] = x[i] + (y[i] - x[i]) * u
            elif op == OP_POIS:
                key = keys[j]
                x = regs[ia]
                for i in range(m):
                    d[i] = _poisson(key, ctr[i], x[i])
            elif op == OP_CAT:
                key = keys[j]
                for i in range(m):
                    total = 0.0
                    for c in range(ic):
                        total += regs[ia + c, i]
                    u = np.float64(np.int64(_hash(key, ctr[i]) >> _S11)) * _TWO_M53 * total
                    acc = 0.0
                    pick = ic - 1
                    for c in range(ic - 1):
                        acc += regs[ia + c, i]
                        if u < acc:
                            pick = c
                            break
                    d[i] = pick if total > 0.0 else np.nan
        for s in range(store_reg.shape[0]):
            x = regs[store_reg[s]]
            if store_kind[s] == 0:
                o = out_f[store_row[s]]
                for i in range(m):
                    o[b0 + i] = x[i]
            else:
                ou = out_u[store_row[s]]
                for i in range(m):
                    ou[b0 + i] = np.uint8(x[i])


@njit(**_JIT)
def _compact_rows(out_f, out_u, keep, n):
    """Move the rows with ``keep != 0`` to the front of every column, in order; return their count.

    In place, column by column (sequential memory access), so that filtering a cohort
    (representation and selection bias) needs no second copy of it. ``keep`` must not be a row of
    ``out_u`` (pass a copy).
    """
    w = 0
    for r in range(out_f.shape[0]):
        col = out_f[r]
        w = 0
        for i in range(n):
            if keep[i] != 0:
                col[w] = col[i]
                w += 1
    for r in range(out_u.shape[0]):
        colu = out_u[r]
        w = 0
        for i in range(n):
            if keep[i] != 0:
                colu[w] = colu[i]
                w += 1
    if out_f.shape[0] + out_u.shape[0] == 0:
        for i in range(n):
            if keep[i] != 0:
                w += 1
    return w


def ziggurat_tables():
    """The 256-layer ziggurat tables (k: int64 acceptance bounds, w: widths, f: densities).

    Marsaglia & Tsang (2000), with NumPy's constants for 256 layers and 52-bit magnitudes: the
    tail starts at r = 3.6541528853610088 and every layer has area v = 0.00492867323399.
    """
    n, r, v = 256, 3.6541528853610088, 0.00492867323399
    m = 2.0**52
    k = np.zeros(n, dtype=np.int64)
    w = np.zeros(n)
    f = np.zeros(n)
    dn = tn = r
    q = v / math.exp(-0.5 * dn * dn)
    k[0] = int((dn / q) * m)
    k[1] = 0
    w[0] = q / m
    w[n - 1] = dn / m
    f[0] = 1.0
    f[n - 1] = math.exp(-0.5 * dn * dn)
    for i in range(n - 2, 0, -1):
        dn = math.sqrt(-2.0 * math.log(v / dn + math.exp(-0.5 * dn * dn)))
        k[i + 1] = int((dn / tn) * m)
        tn = dn
        f[i] = math.exp(-0.5 * dn * dn)
        w[i] = dn / m
    return k, w, f
