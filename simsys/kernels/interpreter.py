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

Speed notes (measured with ``benchmarks/sample_speed.py``):
each opcode is a simple loop that LLVM vectorises; ``fastmath`` stays off so the vectorised and
remainder iterations give bit-identical results (block-size independence); ``error_model='numpy'``
lifts the division check that blocks vectorisation. Three ways to lose vectorisation silently were
met, and each is avoided below: (1) a loop with hashing or ``exp`` inside the big dispatch
function of :func:`_run_program` stays scalar (uniforms 2.4 ns instead of 0.3 ns per element), so
those loops live in small ``_pass_*`` functions; (2) indexing an output as ``a[w + i]`` costs a
wrap-around check LLVM cannot remove (3-4x slower stores), so rows are written through slices;
(3) a table look-up (the ziggurat's) is a gather, which LLVM will not vectorise on this CPU, so the
normal pass hashes in one vectorised loop and looks up in a separate scalar one. ``exp`` is a
polynomial in plain arithmetic, with 2**k made by a bitcast (:func:`_bits_as_float`), so it
vectorises too (numba's scalar ``exp`` does not).
"""

from __future__ import annotations

import math
import threading

import numpy as np

_JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath=False)
_PENDING: dict = {}  # name -> Python function of every kernel below, until numba takes them
_LOCK = threading.Lock()


def _kernel(fn):
    """Mark ``fn`` as a kernel: ``numba.njit(**_JIT)``, applied when a kernel is first used.

    numba is imported only then (see :func:`__getattr__` at the end of this module), so that
    ``simsys validate`` and ``simsys schema`` -- which import this module for its opcodes but run
    no kernel -- do not pay numba's ~0.2 s import. Everything numba compiles stays in this one
    file: its on-disk cache watches only the timestamp of the kernel's own file.
    """
    _PENDING[fn.__name__] = fn
    return fn


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
OP_NANCHECK = 48  # record the rows where register a is NaN (a per-patient bias probability)

# --- unusable values -------------------------------------------------------------------------------
# The kernel never raises: a random instruction that meets a value it cannot sample from (a NaN
# probability, a negative categorical weight, a Poisson rate above the maximum) writes NaN for that
# row and records it in ``errs[j] = (rows, first patient index, reason of that patient)``; the Python
# wrapper (``simsys.simulate.run_plan``) turns any record into an error naming the node.
BAD_NAN, BAD_NEGATIVE, BAD_ZERO_SUM, BAD_INFINITE, BAD_TOO_LARGE = 1, 2, 3, 4, 5
POISSON_MAX_RATE = 1e10
"""The largest Poisson rate sampled: above it, the float64 acceptance test of PTRS (terms of size
rate*log(rate) cancelling to O(1)) loses the precision a draw needs (and counts above 2**63 would
not fit the int64 it computes them in)."""

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


@_kernel
def _mix(z):
    """SplitMix64's finaliser (Steele, Lea & Flood 2014): a bijective 64-bit avalanche."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@_kernel
def _hash(key, ctr):
    """64 random bits for (stream ``key``, patient ``ctr``): two keyed finaliser rounds."""
    return _mix(_mix((ctr * _GOLDEN) ^ key) + key)


@_kernel
def _uniform(key, ctr):
    """A uniform in [0, 1) with 53 random bits."""
    return np.float64(np.int64(_hash(key, ctr) >> _S11)) * _TWO_M53


_bits_as_float = None  # the intrinsic below, made by _compile_all when numba is first needed


def _make_bits_as_float():
    """``_bits_as_float(b)``: the float64 whose bit pattern is the int64 ``b``.

    A numba intrinsic (one LLVM bitcast): unlike a view of an int64 array as float64, it keeps the
    loops that build 2**k for :func:`_exp` vectorisable. Plain NumPy when the JIT is disabled.
    """
    from numba import config, types
    from numba.extending import intrinsic

    if config.DISABLE_JIT:
        return lambda b: np.int64(b).view(np.float64)

    import llvmlite.ir as llvm_ir

    @intrinsic
    def _bits_as_float(typingctx, bits):
        if not (isinstance(bits, types.Integer) and bits.bitwidth == 64):
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], llvm_ir.DoubleType())

        return types.float64(bits), codegen

    return _bits_as_float


@_kernel
def _exp(x):
    """exp(x) in plain arithmetic, so that loops calling it vectorise (numba's own exp does not).

    Range reduction by ln 2 (Cody-Waite, two-part constant), a degree-11 Taylor polynomial on
    |r| <= ln(2)/2 (relative error below 1e-14), and 2**k built from its exponent bits. x is
    clamped to [-708, 709] so 2**k stays a normal double; NaN propagates.
    """
    t = min(max(x, _EXP_LO), _EXP_HI)
    kf = np.floor(t * _LOG2E + 0.5)
    r = (t - kf * _LN2_HI) - kf * _LN2_LO
    p = 1.0 + r * (1.0 + r * (0.5 + r * (1.6666666666666666e-01 + r * (
        4.1666666666666664e-02 + r * (8.3333333333333332e-03 + r * (
            1.3888888888888889e-03 + r * (1.9841269841269841e-04 + r * (
                2.4801587301587302e-05 + r * (2.7557319223985893e-06 + r * (
                    2.7557319223985888e-07 + r * 2.5052108385441720e-08))))))))))
    s = _bits_as_float((np.int64(kf) + 1023) << 52)
    return p * s if x == x else x


@_kernel
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


@_kernel
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


# --- one vectorised pass per opcode ---------------------------------------------------------------
# Each loop below lives in its own small function: LLVM then vectorises it with cheap run-time
# overlap checks, which it gives up on inside the big dispatch loop of _run_program (measured:
# uniforms 2.5 -> 0.4 ns, logistic Bernoulli 7.4 -> ~1.5 ns per element). The destination is never
# one of the inputs except where said (the compiler guarantees it; a loop writing onto its own input
# falls back to scalar code).

@_kernel
def _pass_uniform(key, ctr, d, m):
    for i in range(m):
        d[i] = _uniform(key, ctr[i])


@_kernel
def _pass_unif(key, ctr, lo, hi, d, m):
    for i in range(m):
        d[i] = lo[i] + (hi[i] - lo[i]) * _uniform(key, ctr[i])


@_kernel
def _pass_bern(key, ctr, p, d, m):
    """d = 1[u < p]; returns the number of rows whose p is NaN (for them d is 0)."""
    bad = 0
    for i in range(m):
        pi = p[i]
        d[i] = 1.0 if _uniform(key, ctr[i]) < pi else 0.0
        bad += pi != pi
    return bad


@_kernel
def _pass_bern_logit(key, ctr, x, d, m):
    """d = 1[u < logistic(x)], tested as u * (1 + exp(-x)) < 1 (no division); returns the number
    of rows whose x is NaN."""
    bad = 0
    for i in range(m):
        xi = x[i]
        d[i] = 1.0 if _uniform(key, ctr[i]) * (1.0 + _exp(-xi)) < 1.0 else 0.0
        bad += xi != xi
    return bad


@_kernel
def _count_nan(x, m):
    bad = 0
    for i in range(m):
        bad += x[i] != x[i]
    return bad


@_kernel
def _note(errs, j, rows, pid, reason):
    """Record ``rows`` unusable rows of instruction ``j``; keep the lowest patient index and its reason."""
    if errs[j, 0] == 0 or pid < errs[j, 1]:
        errs[j, 1] = pid
        errs[j, 2] = reason
    errs[j, 0] += rows


@_kernel
def _note_nan(errs, j, x, ctr, m, rows):
    """Record the ``rows`` rows whose ``x`` is NaN (found again here: only when there are some)."""
    for i in range(m):
        if x[i] != x[i]:
            _note(errs, j, rows, np.int64(ctr[i]), BAD_NAN)
            return


@_kernel
def _categorical(key, ctr, w, c0, i, ic):
    """One categorical draw with weights ``w[c0 .. c0+ic-1, i]``; returns (code, reason).

    The code is the first c with u * total < w_0 + ... + w_c (the last otherwise). When the finite
    weights' sum overflows, every weight is divided by the largest first (the same draw in real
    arithmetic; weights that sum to a finite number are used as given). A NaN, negative or infinite
    weight, or an all-zero row, gives (NaN, reason).
    """
    total = 0.0
    wmax = 0.0
    for c in range(ic):
        x = w[c0 + c, i]
        if not (x >= 0.0):
            return np.nan, (BAD_NAN if x != x else BAD_NEGATIVE)
        if x == np.inf:
            return np.nan, BAD_INFINITE
        total += x
        wmax = max(wmax, x)
    if not (total > 0.0):
        return np.nan, BAD_ZERO_SUM
    if total < np.inf:
        u = _uniform(key, ctr) * total
        acc = 0.0
        for c in range(ic - 1):
            acc += w[c0 + c, i]
            if u < acc:
                return np.float64(c), 0
        return np.float64(ic - 1), 0
    total = 0.0
    for c in range(ic):
        total += w[c0 + c, i] / wmax
    u = _uniform(key, ctr) * total
    acc = 0.0
    for c in range(ic - 1):
        acc += w[c0 + c, i] / wmax
        if u < acc:
            return np.float64(c), 0
    return np.float64(ic - 1), 0


@_kernel
def _pass_exp(x, d, m):
    for i in range(m):
        d[i] = _exp(x[i])


@_kernel
def _pass_logistic(x, d, m):
    for i in range(m):
        d[i] = 1.0 / (1.0 + _exp(-x[i]))


@_kernel
def _pass_where(c, x, y, d, m):
    for i in range(m):
        xi = x[i]  # both loaded unconditionally, so that the choice is a vector blend
        yi = y[i]
        d[i] = xi if c[i] != 0.0 else yi


@_kernel
def _pass_normal(key, ctr, mean, sd, sd_k, d, z, bits, rows, m, zk, zw, zf):
    """d = mean + sd * z (``sd`` a register, or the constant ``sd_k`` when ``sd`` is empty).

    z is the ziggurat's first try for every row -- the hashing vectorised, the table look-ups in a
    branch-free scalar loop (LLVM will not vectorise gathers on this CPU) -- then the full algorithm
    for the ~1.5% of rows that try rejected. ``d`` may be ``mean`` itself: z is kept apart.
    """
    for i in range(m):
        bits[i] = _hash(key, ctr[i])
    n_rej = 0
    for i in range(m):
        h = bits[i]
        idx = np.int64(h & _MASK8)
        rabs = np.int64((h >> _S9) & _MASK52)
        x = rabs * zw[idx]
        z[i] = x - 2.0 * np.int64((h >> _S8) & _MASK1) * x
        rows[n_rej] = i
        n_rej += rabs >= zk[idx]
    for q in range(n_rej):
        i = rows[q]
        z[i] = _normal_slow(key, ctr[i], zk, zw, zf)
    if sd.shape[0] > 0:
        for i in range(m):
            d[i] = mean[i] + sd[i] * z[i]
    else:
        for i in range(m):
            d[i] = mean[i] + sd_k * z[i]


@_kernel
def _keep_index(keep, idx, m):
    """Indices of the rows with keep != 0, in order (branch-free); returns their count."""
    c = 0
    for i in range(m):
        idx[c] = i
        c += keep[i] != 0.0
    return c


@_kernel
def _run_program(code, keys, consts, n_regs, ctr0, row_ids, inputs, store_reg, store_kind,
                 store_row, keep_reg, out_f, out_u, out_pid, w0, start, stop, block, zk, zw, zf,
                 errs):
    """Execute the bytecode for rows ``start:stop``; write them to the outputs from row ``w0`` on.

    Returns the number of rows written: ``stop - start``, or, when ``keep_reg >= 0``, the number of
    rows whose register ``keep_reg`` is non-zero (only those are written, in order: representation
    and selection bias filter the cohort here, with no second copy of it).

    Parameters
    ----------
    code : int64[n_instr, 5]   (op, dst, a, b, c) per instruction
    keys : uint64[n_instr]     stream key of each random instruction (unused by others)
    consts : float64[n_const]  the constant table (params and folded sub-expressions)
    n_regs : int               registers in the file (nodes first, then temporaries)
    ctr0 : int                 patient index of row 0 (used when ``row_ids`` is empty)
    row_ids : int64[N] or [0]  explicit patient indices (counterfactuals of a filtered cohort)
    inputs : float64[n_in, N]  per-row values for OP_LOAD (interventions given as data)
    store_reg, store_kind, store_row : int64[n_store]
        register -> output column: kind 0 writes ``out_f[row]``, kind 1 ``out_u[row]`` (uint8).
    keep_reg : int             register of the keep flag, or -1 to write every row
    out_f : float64[n_f, M];  out_u : uint8[n_u, M];  out_pid : int64[M] or [0] (patient indices)
    w0 : int                   output row of the first row written
    block : int                rows per block (results do not depend on it)
    zk, zw, zf : the ziggurat tables (see ``simsys.program.ZIGGURAT``)
    errs : int64[n_instr, 3]   zeros; filled where a random instruction met unusable values
        (rows, lowest patient index, reason: the ``BAD_*`` codes above). Those rows get NaN.
    """
    regs = np.empty((n_regs, block), dtype=np.float64)
    z = np.empty(block, dtype=np.float64)
    ctr = np.empty(block, dtype=np.uint64)
    bits = np.empty(block, dtype=np.uint64)
    idx = np.empty(block, dtype=np.int64)
    no_sd = np.empty(0, dtype=np.float64)
    n_instr = code.shape[0]
    use_ids = row_ids.shape[0] > 0
    write_pid = out_pid.shape[0] > 0
    w = w0
    for b0 in range(start, stop, block):
        m = min(block, stop - b0)
        # (rows are addressed through slices: indexing ``a[b0 + i]`` costs a wrap-around check
        # that LLVM cannot prove away, and made every such loop 3-4x slower)
        if use_ids:
            ids = row_ids[b0:b0 + m]
            for i in range(m):
                ctr[i] = np.uint64(ids[i])
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
                _pass_where(regs[ia], regs[ib], regs[ic], d, m)
            elif op == OP_EXP:
                _pass_exp(regs[ia], d, m)
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
                _pass_logistic(regs[ia], d, m)
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
                x = inputs[ia, b0:b0 + m]
                for i in range(m):
                    d[i] = x[i]
            elif op == OP_BERN:
                nb = _pass_bern(keys[j], ctr, regs[ia], d, m)
                if nb > 0:
                    _note_nan(errs, j, regs[ia], ctr, m, nb)
            elif op == OP_BERNL:
                nb = _pass_bern_logit(keys[j], ctr, regs[ia], d, m)
                if nb > 0:
                    _note_nan(errs, j, regs[ia], ctr, m, nb)
            elif op == OP_NORM:
                _pass_normal(keys[j], ctr, regs[ia], regs[ib], 0.0, d, z, bits, idx, m, zk, zw, zf)
            elif op == OP_NORMC:
                _pass_normal(keys[j], ctr, regs[ia], no_sd, consts[ib], d, z, bits, idx, m, zk, zw, zf)
            elif op == OP_UNIF:
                _pass_unif(keys[j], ctr, regs[ia], regs[ib], d, m)
            elif op == OP_UNIFORM01:
                _pass_uniform(keys[j], ctr, d, m)
            elif op == OP_NANCHECK:
                nb = _count_nan(regs[ia], m)
                if nb > 0:
                    _note_nan(errs, j, regs[ia], ctr, m, nb)
            elif op == OP_POIS:
                key = keys[j]
                x = regs[ia]
                for i in range(m):
                    lam = x[i]
                    if lam >= 0.0 and lam <= POISSON_MAX_RATE:
                        d[i] = _poisson(key, ctr[i], lam)
                    else:
                        d[i] = np.nan
                        _note(errs, j, 1, np.int64(ctr[i]), BAD_NAN if lam != lam else (
                            BAD_NEGATIVE if lam < 0.0 else BAD_TOO_LARGE))
            elif op == OP_CAT:
                key = keys[j]
                for i in range(m):
                    v, why = _categorical(key, ctr[i], regs, ia, i, ic)
                    d[i] = v
                    if why != 0:
                        _note(errs, j, 1, np.int64(ctr[i]), why)
        # write the block out (only its kept rows when filtering)
        if keep_reg < 0:
            for s in range(store_reg.shape[0]):
                x = regs[store_reg[s]]
                if store_kind[s] == 0:
                    o = out_f[store_row[s], w:w + m]
                    for i in range(m):
                        o[i] = x[i]
                else:
                    ou = out_u[store_row[s], w:w + m]
                    for i in range(m):
                        ou[i] = np.uint8(x[i])
            if write_pid:
                op_ = out_pid[w:w + m]
                for i in range(m):
                    op_[i] = np.int64(ctr[i])
            w += m
        else:
            c = _keep_index(regs[keep_reg], idx, m)
            for s in range(store_reg.shape[0]):
                x = regs[store_reg[s]]
                if store_kind[s] == 0:
                    o = out_f[store_row[s], w:w + c]
                    for q in range(c):
                        o[q] = x[idx[q]]
                else:
                    ou = out_u[store_row[s], w:w + c]
                    for q in range(c):
                        ou[q] = np.uint8(x[idx[q]])
            if write_pid:
                op_ = out_pid[w:w + c]
                for q in range(c):
                    op_[q] = np.int64(ctr[idx[q]])
            w += c
    return w - w0


@_kernel
def _copy_rows(src_f, src_u, src_pid, c, out_f, out_u, out_pid, w):
    """Copy the first ``c`` rows of every column of ``src_*`` to rows ``w:w+c`` of ``out_*``."""
    for r in range(src_f.shape[0]):
        out_f[r, w:w + c] = src_f[r, :c]
    for r in range(src_u.shape[0]):
        out_u[r, w:w + c] = src_u[r, :c]
    if src_pid.shape[0] > 0:
        out_pid[w:w + c] = src_pid[:c]


def _compile_all() -> None:
    """Hand every kernel to numba (compiled, or loaded from its cache, at its first call)."""
    with _LOCK:
        if not _PENDING:
            return
        from numba import njit

        g = globals()
        g["_bits_as_float"] = _make_bits_as_float()
        for name, fn in _PENDING.items():
            g[name] = njit(**_JIT)(fn)
        _PENDING.clear()


def __getattr__(name: str):
    """The kernels are module attributes only once numba has them: the first access makes them."""
    if name in _PENDING:
        _compile_all()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


for _name in _PENDING:  # until _compile_all, a kernel is reached through __getattr__ only
    del globals()[_name]
del _name
