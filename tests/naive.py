"""Slow, obviously correct NumPy twins of the sampling kernels (``simsys.kernels.interpreter``).

Each function re-derives one piece of the kernel from its definition, with plain NumPy ``uint64``
arithmetic (which wraps modulo 2**64, as the kernel's does) or plain Python loops, so that the tests
can demand bit-for-bit equality with the compiled interpreter:

- :func:`hash64` / :func:`uniform`: the keyed counter-based generator (two SplitMix64 finaliser
  rounds, Steele, Lea & Flood 2014);
- :func:`standard_normal`: the 256-layer ziggurat (Marsaglia & Tsang 2000) with the kernel's rule
  for deriving the extra uniforms of rejected rows;
- :func:`poisson_small`: Poisson by inversion (products of uniforms) for rates below 10;
- :func:`categorical`: inverse-CDF draw over normalised weights.

Nothing here imports the kernel's code; only the ziggurat tables are shared (they are data, built
by a plain-Python function).
"""

from __future__ import annotations

import math

import numpy as np

U64 = np.uint64
M1 = U64(0xBF58476D1CE4E5B9)
M2 = U64(0x94D049BB133111EB)
GOLDEN = U64(0x9E3779B97F4A7C15)
ALT = U64(0xD1B54A32D192ED03)


def mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on an array of uint64 (wrapping arithmetic)."""
    z = np.asarray(z, dtype=U64)
    z = (z ^ (z >> U64(30))) * M1
    z = (z ^ (z >> U64(27))) * M2
    return z ^ (z >> U64(31))


def hash64(key: int, ctr: np.ndarray) -> np.ndarray:
    """64 random bits for stream ``key`` and patient numbers ``ctr``: mix(mix(ctr*G ^ key) + key)."""
    k = U64(key % 2**64)
    c = np.asarray(ctr, dtype=U64)
    return mix(mix((c * GOLDEN) ^ k) + k)


def uniform(key: int, ctr: np.ndarray) -> np.ndarray:
    """Uniforms in [0, 1): the top 53 bits of the hash times 2**-53."""
    return (hash64(key, ctr) >> U64(11)).astype(np.float64) * 2.0**-53


def _derived(key: int, *terms: tuple[int, np.uint64]) -> int:
    """``key + a*A + b*B ...`` modulo 2**64 (how the kernel derives the keys of extra uniforms)."""
    out = key
    for count, mult in terms:
        out = (out + count * int(mult)) % 2**64
    return out


def _normal_one(key: int, ctr: int, zk, zw, zf) -> float:
    """The full ziggurat for one patient, attempt by attempt (Marsaglia & Tsang 2000)."""
    r_tail = 3.6541528853610088
    c = np.array([ctr], dtype=U64)
    attempt = 0
    while True:
        h = int(hash64(_derived(key, (attempt, ALT)), c)[0])
        idx = h & 0xFF
        sign = (h >> 8) & 1
        rabs = (h >> 9) & 0x000FFFFFFFFFFFFF
        x = rabs * zw[idx]
        if sign == 1:
            x = -x
        if rabs < zk[idx]:
            return x
        if idx == 0:
            sub = 1
            while True:
                u1 = uniform(_derived(key, (attempt, ALT), (sub, GOLDEN)), c)[0]
                u2 = uniform(_derived(key, (attempt, ALT), (sub + 1, GOLDEN)), c)[0]
                xx = -math.log1p(-u1) / r_tail
                yy = -math.log1p(-u2)
                if yy + yy > xx * xx:
                    return -(r_tail + xx) if sign == 1 else r_tail + xx
                sub += 2
        else:
            u = uniform(_derived(key, (attempt, ALT), (1, GOLDEN)), c)[0]
            if (zf[idx - 1] - zf[idx]) * u + zf[idx] < math.exp(-0.5 * x * x):
                return x
        attempt += 1


def standard_normal(key: int, ctr: np.ndarray, tables) -> np.ndarray:
    """Standard normals: the first try for every row at once, then rejected rows one by one."""
    zk, zw, zf = tables
    h = hash64(key, ctr)
    idx = (h & U64(0xFF)).astype(np.int64)
    sign = ((h >> U64(8)) & U64(1)).astype(np.int64)
    rabs = ((h >> U64(9)) & U64(0x000FFFFFFFFFFFFF)).astype(np.int64)
    x = rabs * zw[idx]
    out = np.where(sign == 1, -x, x)
    for i in np.flatnonzero(rabs >= zk[idx]):
        out[i] = _normal_one(key, int(ctr[i]), zk, zw, zf)
    return out


def poisson_small(key: int, ctr: np.ndarray, lam: float) -> np.ndarray:
    """Poisson(lam) for lam < 10 by inversion: count uniforms until their product <= exp(-lam)."""
    assert 0.0 < lam < 10.0
    enlam = math.exp(-lam)
    out = np.empty(len(ctr))
    for i, c in enumerate(np.asarray(ctr, dtype=U64)):
        x, prod, sub = 0, 1.0, 1
        while True:
            prod *= uniform(_derived(key, (sub, GOLDEN)), np.array([c]))[0]
            sub += 1
            if prod <= enlam:
                break
            x += 1
        out[i] = x
    return out


def categorical(key: int, ctr: np.ndarray, weights) -> np.ndarray:
    """Category codes: the first c with u * sum(w) < w[0] + ... + w[c] (the last one otherwise)."""
    w = np.asarray(weights, dtype=np.float64)
    u = uniform(key, ctr) * w.sum()
    acc = np.cumsum(w[:-1])
    pick = np.full(len(u), len(w) - 1, dtype=np.int64)
    for c in range(len(w) - 2, -1, -1):  # from the last boundary down: the first one wins
        pick[u < acc[c]] = c
    return pick
