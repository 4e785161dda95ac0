"""Fused forward Taylor jets of MLP / ModifiedMLP: one program per tile of points, every layer in one launch, and
every layer ONE matrix product over all derivative channels (Hopper's wgmma from width 64).

Transposed, stacked jet. The jet of a tile of B points is one (WP, N) tensor: units along the rows and
(channel slot, point) along the N = C·B columns. A layer is one product Zᵀ = Wᵀ Tᵀ with M = WP rows, so Hopper's
wgmma applies whenever WP ≥ 64, whatever B is (WP = 32 compiles to mma.sync). The jet is the B operand (shared
memory: its tf32 hi/lo halves are split in registers and written there once per layer); Wᵀ is the A operand,
split into tf32 hi/lo planes on the host and stored K-major, so it goes from memory to shared memory untouched and
wgmma reads it there. (When Triton split Wᵀ itself it kept both halves in registers, WP per thread, and M3 at
WP = 128 spilled at every tile.) tf32x3 is three tf32 products, tf32 one.
Tile and warps per configuration come from ``launch_table.py``, written by ``benchmarks/sm90_static.py --search``.
``ieee`` products are plain FMAs: correct but several times slower than ``tf32x3`` on a GPU, and M3 at WP = 128
spills (about 1.7 KB per thread): use it to check, not to train.

Slots: C = 2H with H = pow2(1 + NSP + NOP). First half: value, d_s[0..NSP), d_o[0..NOP); second half: s_s[k] in
the slot of its d_s[k] (slot H + 1 + k), the rest zero. Burgers: H = 4, (value, u_x, u_y, u_t | 0, u_xx, u_yy, 0).
Column order (point_hi, half, slot_bits, point_lo, slot_bit0): in the wgmma accumulator a thread holds column bit 0
and every column bit from 3 up, while bits 1-2 are lane bits. So all C slots of a (unit, point) sit in one thread:
the tanh and gate rules, which mix a point's value, d_s and s_s, are register-only (no shuffles, no shared memory)
and the per-(unit, point) work (tanh, the U and V terms) is done exactly once: nothing is recomputed across lanes
or warps. The slot of each register is a compile-time constant, so the masks below fold away and padded slots
cost no arithmetic.

Fused Burgers (BURGERS) assumes the Burgers spec of ``burgers_fields``: second directions (x, y), first-only t.

Rules on the tile (docs/math.md): linear (bias on the value slot), tanh (value → h; d → g·z_i; s_s → g·(z_ii − 2h z_i²))
and the gate H = U + Z ⊙ (V − U), with h_U, h_V per (unit, point) and the direction rows of W_U, W_V computed once
and kept (U_i = g_U W_U[i], U_ii = −2 h_U g_U W_U[i]²).
"""
import functools
import os
import weakref

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice
from triton.runtime.errors import OutOfResources

from pinnfast.errors import PinnfastError
from pinnfast.models import MLP, ModifiedMLP

from .launch_table import BACKWARD_LAUNCH_TABLE, LAUNCH_TABLE


# The interpreter has no libdevice fast division: it takes the IEEE division (same formula, ≤ 2 ulp apart).
INTERPRETED = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") == "1")
POINT_LO = 4  # points on the lane bits of a column group: a tile is a multiple of 4 points


@triton.constexpr_function
def slots_per_half(live):
    """H, the slots of one half of a unit's column group: the power of two (4, 8 or 16) that holds the live
    first-half slots (value, NSP, NOP); evaluated at compile time in the kernels, and by the host for buffer sizes."""
    return 4 if live <= 4 else 8 if live <= 8 else 16


@triton.jit
def _tanh(z):
    """tanh from one exp2 and one approximate division (div.approx: MUFU.RCP and a multiply, 2 ulp; the divisor
    1 + e^(−2|z|) lies in [1, 2]) instead of an IEEE division: a few ulp, with a series for |z| < 0.1 against the
    cancellation in 1 − e^(−2|z|)."""
    a = tl.abs(z)
    t = tl.exp2(a * -2.8853900817779268)  # e^(−2|z|)
    z2 = z * z
    series = a * (1.0 + z2 * (-1.0 / 3.0 + z2 * (2.0 / 15.0 + z2 * (-17.0 / 315.0 + z2 * (62.0 / 2835.0)))))
    if INTERPRETED:
        ratio = (1.0 - t) / (1.0 + t)
    else:
        ratio = libdevice.fast_dividef(1.0 - t, 1.0 + t)
    magnitude = tl.where(a < 0.1, series, ratio)
    return tl.where(z < 0, -magnitude, magnitude)


@triton.jit
def _pre_activation(x_ptr, rows, row_mask, w_ptr, b_ptr, u, IN_DIM: tl.constexpr, WP: tl.constexpr):
    """x W' + b' (input normalisation folded in) per (unit, point)."""
    a = tl.load(b_ptr + u)
    for i in tl.static_range(IN_DIM):
        x_i = tl.load(x_ptr + rows * IN_DIM + i, mask=row_mask, other=0.0)
        a = a + x_i * tl.load(w_ptr + i * WP + u)
    return a


@triton.jit
def _slot_rows(w_ptr, dir_slot, u, WP: tl.constexpr):
    """W'[dir(slot), unit]: the input-layer derivative of each slot (zero for value and padded slots)."""
    return tl.load(w_ptr + tl.maximum(dir_slot, 0) * WP + u, mask=dir_slot >= 0, other=0.0)


@triton.jit
def _round_tf32(x):
    return tl.inline_asm_elementwise("cvt.rna.tf32.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1)


PLANES = tl.constexpr(5)  # per hidden layer: W (in, out); tf32 high, low of Wᵀ (out, in); tf32 high, low of W


@triton.jit
def _linear(t, w_ptr, b_ptr, u, is_value, WP: tl.constexpr, N: tl.constexpr, PRECISION: tl.constexpr):
    """Zᵀ = Wᵀ Tᵀ + [value] b: one (WP, WP) × (WP, N) product for every slot of the tile."""
    z = _product(t, w_ptr, 1, True, WP, N, PRECISION)
    return z + tl.where(is_value, tl.load(b_ptr + u), 0.0)


@triton.jit
def _product(t, w_ptr, HIGH: tl.constexpr, TRANSPOSED: tl.constexpr, WP: tl.constexpr, N: tl.constexpr,
             PRECISION: tl.constexpr):
    """A Tᵀ for every slot of the tile, A = Wᵀ (forward, TRANSPOSED) or W (backward), from the layer's planes.

    ``w_ptr`` holds the planes of ``PLANES``: W (in, out) for ieee's FMAs, and the tf32 high and low parts of A
    (planes HIGH, HIGH + 1), split on the host and K-major, so that the A operand goes from memory to shared memory
    untouched and wgmma reads it there: no register copy of A (which made W=128 spill).
    tf32x3 is A_hi T_lo + A_lo T_hi + A_hi T_hi (small terms first); the jet's halves are split in registers."""
    units = tl.arange(0, WP)
    plane = units[:, None] * WP + units[None, :]  # plane[row, k]: K contiguous
    t2 = tl.reshape(t, (WP, N))
    if PRECISION == "ieee":  # A read from W: the layout the FMA product compiles best from (no spill at W=64)
        if TRANSPOSED:
            z = tl.dot(tl.load(w_ptr + units[None, :] * WP + units[:, None]), t2, input_precision="ieee")
        else:
            z = tl.dot(tl.load(w_ptr + plane), t2, input_precision="ieee")
    else:
        a_hi = tl.load(w_ptr + HIGH * WP * WP + plane)
        if INTERPRETED:  # no tf32 under the interpreter: the host-rounded weight halves, fp32 products
            z = tl.dot(a_hi, t2, input_precision="ieee")
            if PRECISION == "tf32x3":
                z = tl.dot(tl.load(w_ptr + (HIGH + 1) * WP * WP + plane), t2, z, input_precision="ieee")
        else:
            t_hi = _round_tf32(t2)
            if PRECISION == "tf32x3":
                z = tl.dot(a_hi, _round_tf32(t2 - t_hi), input_precision="tf32")
                z = tl.dot(tl.load(w_ptr + (HIGH + 1) * WP * WP + plane), t_hi, z, input_precision="tf32")
                z = tl.dot(a_hi, t_hi, z, input_precision="tf32")
            else:
                z = tl.dot(a_hi, t_hi, input_precision="tf32")
    return tl.reshape(z, t.shape)


@triton.jit
def _value_and_partner(z, is_value, half):
    """Per (unit, point): the value, and for every slot the first-half slot aligned with it (d_s of an s_s)."""
    part = tl.sum(tl.where(half == 0, z, 0.0), axis=2, keep_dims=True)
    val = tl.sum(tl.sum(tl.where(is_value, z, 0.0), axis=5, keep_dims=True), axis=3, keep_dims=True)
    return tl.sum(val, axis=2, keep_dims=True), part


@triton.jit
def _tanh_rule(z, is_value, is_second, half):
    """tanh rule on a stacked pre-activation jet (h; g z_i; g (z_ii − 2 h z_i²)), with h, g = 1 − h² and each slot's
    aligned first-derivative z_p."""
    z_val, z_part = _value_and_partner(z, is_value, half)
    h = _tanh(z_val)
    g = 1.0 - h * h
    return tl.where(is_value, h, g * (z - tl.where(is_second, 2.0 * h * z_part * z_part, 0.0))), h, g, z_part


@triton.jit
def _activate(z, h_u, h_v, r_u, r_v, is_value, is_second, is_live, half, MODIFIED: tl.constexpr):
    """tanh rule on the stacked pre-activation, then (M3) the gate H = U + Z ⊙ (V − U)."""
    t, h, g, z_part = _tanh_rule(z, is_value, is_second, half)
    if MODIFIED:
        zp = g * z_part  # Z_i of the aligned d_s slot; Z = h
        g_u = 1.0 - h_u * h_u
        g_v = 1.0 - h_v * h_v
        # first  U_i + Z D_i               = P r_u + Q r_v,    P = (1 − Z) g_u, Q = Z g_v
        # second U_ii + Z D_ii + 2 Z_i D_i = r_u (−2 Z_i g_u − 2 P h_u r_u) + r_v (2 Z_i g_v − 2 Q h_v r_v)
        p = (1.0 - h) * g_u
        q = h * g_v
        c_u = tl.where(is_second, -2.0 * (zp * g_u) + (-2.0 * (p * h_u)) * r_u, p)
        c_v = tl.where(is_second, 2.0 * (zp * g_v) + (-2.0 * (q * h_v)) * r_v, q)
        t = t * (h_v - h_u) + tl.where(is_value, h_u, r_u * c_u + r_v * c_v)
    return tl.where(is_live, t, 0.0)


@triton.jit
def _slot_layout(dirs_s_ptr, dirs_o_ptr, WP: tl.constexpr, NSP: tl.constexpr, NOP: tl.constexpr, B: tl.constexpr,
                 H: tl.constexpr):
    """Index tensors of the 6-D tile view (unit, point_hi, half, slot_bits, point_lo, slot_bit0), each slot's role
    (value, second-direction first derivative d_s, first-only d_o, second s_s, live) and its input direction."""
    u = tl.arange(0, WP)[:, None, None, None, None, None]
    ph = tl.arange(0, B // 4)[None, :, None, None, None, None]
    half = tl.arange(0, 2)[None, None, :, None, None, None]
    sb = tl.arange(0, H // 2)[None, None, None, :, None, None]
    pl = tl.arange(0, 4)[None, None, None, None, :, None]
    sa = tl.arange(0, 2)[None, None, None, None, None, :]
    j = sb * 2 + sa  # slot within its half
    is_value = (half == 0) & (j == 0)
    is_ds = (j >= 1) & (j <= NSP)
    is_do = (half == 0) & (j > NSP) & (j <= NSP + NOP)
    is_second = (half == 1) & is_ds
    is_live = is_value | (half == 0) & (is_ds | is_do) | is_second
    dir_slot = tl.where(is_ds, tl.load(dirs_s_ptr + tl.maximum(j - 1, 0), mask=is_ds, other=-1),
                        tl.load(dirs_o_ptr + tl.maximum(j - 1 - NSP, 0), mask=is_do, other=-1))
    return u, ph, pl, half, j, is_value, is_ds, is_do, is_second, is_live, dir_slot


@triton.jit
def _input_layers(x_ptr, rows, row_mask, w_in_ptr, b_in_ptr, u, dir_slot, is_value, is_second,
                  IN_DIM: tl.constexpr, WP: tl.constexpr, MODIFIED: tl.constexpr):
    """The first layer's jet, tanh of z = x W' + b' with z_i = W'[i], z_ii = 0; for M3 also the encoders' values
    h_U, h_V and direction rows r_U, r_V, from which every gate layer rebuilds U and V."""
    LAYER: tl.constexpr = IN_DIM * WP
    FIRST: tl.constexpr = 2 if MODIFIED else 0
    h = _tanh(_pre_activation(x_ptr, rows, row_mask, w_in_ptr + FIRST * LAYER, b_in_ptr + FIRST * WP, u, IN_DIM, WP))
    row = _slot_rows(w_in_ptr + FIRST * LAYER, dir_slot, u, WP)
    t = _input_rule(h, row, is_value, is_second)
    h_u = h
    h_v = h
    r_u = row
    r_v = row
    if MODIFIED:
        h_u = _tanh(_pre_activation(x_ptr, rows, row_mask, w_in_ptr, b_in_ptr, u, IN_DIM, WP))
        h_v = _tanh(_pre_activation(x_ptr, rows, row_mask, w_in_ptr + LAYER, b_in_ptr + WP, u, IN_DIM, WP))
        r_u = _slot_rows(w_in_ptr, dir_slot, u, WP)
        r_v = _slot_rows(w_in_ptr + LAYER, dir_slot, u, WP)
    return t, h_u, h_v, r_u, r_v


@triton.jit
def _input_rule(h, row, is_value, is_second):
    """tanh rule for an input layer (z_i = row, z_ii = 0): h; g row; −2 h g row²."""
    g = 1.0 - h * h
    return tl.where(is_value, h, g * row * tl.where(is_second, -2.0 * h * row, 1.0))


@triton.jit
def _output_channel(j, half, is_value, is_ds, is_do, is_second, map_s_ptr, map_o_ptr, map_ss_ptr, NSP: tl.constexpr):
    """Public channel of every slot (value 0, first derivatives, then seconds); −1 for slots not in the output."""
    ks = tl.maximum(j - 1, 0)
    ko = tl.maximum(j - 1 - NSP, 0)
    return tl.where(is_value, 0, tl.where(
        is_second, tl.load(map_ss_ptr + ks, mask=is_second, other=-1),
        tl.where(is_ds & (half == 0), tl.load(map_s_ptr + ks, mask=is_ds & (half == 0), other=-1),
                 tl.load(map_o_ptr + ko, mask=is_do, other=-1))))


@triton.jit
def _member(x_ptr, w_in_ptr, b_in_ptr, w_h_ptr, b_h_ptr, w_out_ptr, b_out_ptr, nu_ptr, member, x_stride,
            IN_DIM: tl.constexpr, OUT_DIM: tl.constexpr, WP: tl.constexpr, DEPTH: tl.constexpr,
            MODIFIED: tl.constexpr):
    """An ensemble member's points (``x_stride`` 0 when the members share them), packed weights and ν: every
    packed tensor has a leading member axis (one member for a single network)."""
    NIN: tl.constexpr = 3 if MODIFIED else 1
    return (x_ptr + member * x_stride, w_in_ptr + member * (NIN * IN_DIM * WP), b_in_ptr + member * (NIN * WP),
            w_h_ptr + member * (DEPTH * PLANES * WP * WP), b_h_ptr + member * (DEPTH * WP),
            w_out_ptr + member * (OUT_DIM * WP), b_out_ptr + member * OUT_DIM, nu_ptr + member)


@triton.jit
def mlp_jets_kernel(
    x_ptr, w_in_ptr, b_in_ptr, dirs_s_ptr, dirs_o_ptr, w_h_ptr, b_h_ptr, w_out_ptr, b_out_ptr,
    map_s_ptr, map_o_ptr, map_ss_ptr, nu_ptr, out_ptr, N, members, x_stride,
    IN_DIM: tl.constexpr, OUT_DIM: tl.constexpr, WP: tl.constexpr, DEPTH: tl.constexpr,
    NSP: tl.constexpr, NOP: tl.constexpr, MODIFIED: tl.constexpr, ENSEMBLE: tl.constexpr, BURGERS: tl.constexpr,
    B: tl.constexpr, PRECISION: tl.constexpr,
):
    """Jets of a tile of B points (B a multiple of 4) through the whole network, all channels in one operand. For
    an ENSEMBLE the grid's second axis is the member (outputs ``(C, members, N, out)``, Burgers ``(members, N,
    4)``); a single network compiles without the member offsets (pointers offset at run time take registers)."""
    H: tl.constexpr = slots_per_half(1 + NSP + NOP)
    NC: tl.constexpr = 2 * H * B
    member = 0
    if ENSEMBLE:
        member = tl.program_id(1).to(tl.int64)
        x_ptr, w_in_ptr, b_in_ptr, w_h_ptr, b_h_ptr, w_out_ptr, b_out_ptr, nu_ptr = _member(
            x_ptr, w_in_ptr, b_in_ptr, w_h_ptr, b_h_ptr, w_out_ptr, b_out_ptr, nu_ptr, member, x_stride, IN_DIM,
            OUT_DIM, WP, DEPTH, MODIFIED)
    u, ph, pl, half, j, is_value, is_ds, is_do, is_second, is_live, dir_slot = _slot_layout(
        dirs_s_ptr, dirs_o_ptr, WP, NSP, NOP, B, H)
    rows = tl.program_id(0).to(tl.int64) * B + ph * 4 + pl
    t, h_u, h_v, r_u, r_v = _input_layers(x_ptr, rows, rows < N, w_in_ptr, b_in_ptr, u, dir_slot, is_value, is_second,
                                          IN_DIM, WP, MODIFIED)
    for k in range(DEPTH):
        z = _linear(t, w_h_ptr + k * PLANES * WP * WP, b_h_ptr + k * WP, u, is_value, WP, NC, PRECISION)
        t = _activate(z, h_u, h_v, r_u, r_v, is_value, is_second, is_live, half, MODIFIED)

    # output layer: y_o = Σ_units W_out[o, unit] t per slot and point, (PH, 2, SB, 4, 2)
    if BURGERS:
        y_u = tl.sum(t * tl.load(w_out_ptr + u), axis=0)
        y_v = tl.sum(t * tl.load(w_out_ptr + WP + u), axis=0)
        u_val, v_val, u_x, u_y, u_t, lap_u, v_x, v_y, v_t, lap_v = _burgers_terms(y_u, y_v, b_out_ptr, half, j,
                                                                                   is_value, is_second)
        nu = tl.load(nu_ptr)
        r_u = u_t + u_val * u_x + v_val * u_y - nu * lap_u
        r_v = v_t + u_val * v_x + v_val * v_y - nu * lap_v
        prow = tl.program_id(0).to(tl.int64) * B + tl.arange(0, B)
        pmask = prow < N
        base = out_ptr + (member * N + prow) * 4
        tl.store(base, tl.reshape(u_val, (B,)), mask=pmask)
        tl.store(base + 1, tl.reshape(v_val, (B,)), mask=pmask)
        tl.store(base + 2, tl.reshape(r_u, (B,)), mask=pmask)
        tl.store(base + 3, tl.reshape(r_v, (B,)), mask=pmask)
    else:
        channel = _output_channel(j, half, is_value, is_ds, is_do, is_second, map_s_ptr, map_o_ptr, map_ss_ptr,
                                  NSP)
        channel = tl.reshape(channel, (1, 2, H // 2, 1, 2))
        rows_o = tl.reshape(rows, (B // 4, 1, 1, 4, 1))
        value_o = tl.reshape(is_value, (1, 2, H // 2, 1, 2))
        for o in tl.static_range(OUT_DIM):
            y = tl.sum(t * tl.load(w_out_ptr + o * WP + u), axis=0)
            y = y + tl.where(value_o, tl.load(b_out_ptr + o), 0.0)
            offsets = ((tl.maximum(channel, 0).to(tl.int64) * members + member) * N + rows_o) * OUT_DIM + o
            tl.store(out_ptr + offsets, y, mask=(channel >= 0) & (rows_o < N))


@triton.jit
def _burgers_terms(y_u, y_v, b_out_ptr, half, j, is_value, is_second):
    """Per point (PH, 4): u, v and the derivatives in the Burgers residual, from the per-slot outputs y_u, y_v
    (slots: 1 = x, 2 = y (d_s), 3 = t (d_o); second half 1 = xx, 2 = yy)."""
    d_x = (half == 0) & (j == 1)
    d_y = (half == 0) & (j == 2)
    d_t = (half == 0) & (j == 3)
    return (_pick(y_u, is_value) + tl.load(b_out_ptr), _pick(y_v, is_value) + tl.load(b_out_ptr + 1),
            _pick(y_u, d_x), _pick(y_u, d_y), _pick(y_u, d_t), _pick(y_u, is_second),
            _pick(y_v, d_x), _pick(y_v, d_y), _pick(y_v, d_t), _pick(y_v, is_second))


@triton.jit
def _pick(y, mask):
    """Σ over the slots of ``mask`` of a (PH, 2, SB, 4, 2) per-slot output: (PH, 4) per point."""
    m = tl.reshape(mask, (1, 2, y.shape[2], 1, 2))
    return tl.sum(tl.sum(tl.sum(tl.where(m, y, 0.0), axis=4), axis=2), axis=1)


# ----------------------------------------------------------------------------------------------- host side
PRECISIONS = ("ieee", "tf32x3", "tf32")
DEFAULT_PRECISION = "tf32x3"  # fp32-level accuracy at tensor-core speed (BASELINES.md); "ieee" for plain fp32
MAX_WIDTH, MAX_IN_DIM, MAX_OUT_DIM = 128, 4, 4
BLOCKS = (4, 8, 16, 32)  # points per program: a multiple of POINT_LO


def check_block(block):
    """A tile asked for by hand (tuning, tests) must be one of ``BLOCKS``: the layouts assume it."""
    if block is not None and block not in BLOCKS:
        raise PinnfastError(f"block must be one of {', '.join(map(str, BLOCKS))} points, got {block!r}")


def launch_key(meta, burgers, precision):
    return (meta["MODIFIED"], burgers, meta["WP"], meta["NSP"], meta["NOP"], meta["IN_DIM"], meta["OUT_DIM"],
            precision)


def launch_config(meta, burgers, precision, table=LAUNCH_TABLE, default=None):
    """(tile, warps) for a configuration, from the table that benchmarks/sm90_static.py --search wrote: the
    measured-best entry, else the table's entry for the same network with the most derivative channels (a
    superset of the work), else what the sm_90a compiles of M3 Burgers at depth 4 favoured (16 points × 4 warps up
    to width 64: no spill, fewest instructions per point; 8 points × 8 warps at width 128)."""
    key = launch_key(meta, burgers, precision)
    if key in table:
        return table[key]
    similar = [k for k in table if (k[0], k[1], k[2], k[7]) == (key[0], key[1], key[2], key[7])
               and k[3] >= key[3] and k[4] >= key[4]]
    if similar:
        return table[min(similar, key=lambda k: (k[3] + k[4], k))]
    return default or ((16, 4) if meta["WP"] <= 64 else (8, 8))


def backward_launch_config(meta, burgers, precision, stage):
    """(tile, warps) of one stage of the backward (``forward_layer``, ``output_layer``, ``hidden_layer``,
    ``weight_gradient``, ``input_layer``), from its own table (same search, same rules, among tiles of at most 1024
    points × units). Where the table has no entry: the forward's for a forward layer (the same work, and stores),
    4 points × 8 warps for the others (what compiled without spills at every width). Under the interpreter, where
    nothing spills and small tiles only cost time, the forward's default."""
    if INTERPRETED:
        default = None
    else:
        default = launch_config(meta, burgers, precision) if stage == "forward_layer" else (4, 8)
    return launch_config(meta, burgers, precision, BACKWARD_LAUNCH_TABLE.get(stage, {}), default=default)


def _pow2(n, at_least=1):
    return max(at_least, triton.next_power_of_2(n))


def _padded(values, size, fill=-1):
    return list(values) + [fill] * (size - len(values))


def check_supported(model, x, precision):
    """One clear error for anything the kernel does not cover."""
    if not isinstance(model, (MLP, ModifiedMLP)):
        raise PinnfastError(f"the triton backend supports pinnfast.MLP and pinnfast.ModifiedMLP, not "
                            f"{type(model).__name__}; use backend='torch' or 'autograd'")
    if not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise PinnfastError("the triton backend needs CUDA tensors; on the CPU it runs only under the Triton "
                            "interpreter (set TRITON_INTERPRET=1 before importing triton; slow, for testing) — "
                            "or use backend='torch'")
    if any(p.device != x.device for p in model.parameters()):
        raise PinnfastError(f"the model's parameters and the points must be on one device; points are on {x.device}")
    members = getattr(model, "members", None)
    per_member = is_ensemble(model) and x.dim() == 3 and x.shape[0] == members
    if not (x.dim() == 2 or per_member) or x.shape[-1] != model.in_dim:
        shapes = f"(N, {model.in_dim})" + ("" if members is None else f" or ({members}, N, {model.in_dim})")
        raise PinnfastError(f"points must have shape {shapes}, got {tuple(x.shape)}")
    if x.dtype != torch.float32 or any(p.dtype != torch.float32 for p in model.parameters()):
        raise PinnfastError("the triton backend computes in float32: pass a float32 model and float32 points")
    if model.width > MAX_WIDTH or model.in_dim > MAX_IN_DIM or model.out_dim > MAX_OUT_DIM:
        raise PinnfastError(f"the triton backend supports width <= {MAX_WIDTH}, in_dim <= {MAX_IN_DIM} and "
                            f"out_dim <= {MAX_OUT_DIM}; got width {model.width}, in_dim {model.in_dim}, "
                            f"out_dim {model.out_dim}")
    if precision not in PRECISIONS:
        raise PinnfastError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")


def packed_weights(model, spec, device):
    """:func:`pack_weights`, cached per model, spec, device and parameter versions: a training step packs once per
    optimiser step, and a call with unchanged weights neither packs nor copies anything to the device."""
    key = (spec, torch.device(device), tuple(p._version for p in model.parameters()),
           tuple(p.data_ptr() for p in model.parameters()), model.in_scale._version, model.in_shift._version)
    cached = _PACKED.get(model)
    if cached is None or cached[0] != key:
        with torch.no_grad():
            cached = _PACKED[model] = (key, pack_weights(model, spec, device))
    return cached[1]


_PACKED = weakref.WeakKeyDictionary()  # model → (key, packed weights) of its last launch


def forget_packed_weights(model):
    """Drop ``model``'s cached packed weights: needed after its parameters changed without a change of their
    versions, as when a CUDA graph's replay updates them on the device."""
    _PACKED.pop(model, None)


def round_tf32(x):
    """float32 → nearest tf32 (10 mantissa bits, ties away from zero), as PTX ``cvt.rna.tf32.f32``."""
    bits = x.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


def is_ensemble(model):
    """Whether ``model`` is an ensemble (weights with a leading member axis)."""
    return getattr(model, "members", None) is not None


def members_of(model):
    """The ensemble's member count; 1 for a single network."""
    return model.members if is_ensemble(model) else 1


def _weight(layer, members):
    """A layer's weight as ``(members, out, in)``: an ensemble's as it is, a single network's with a member axis."""
    return layer.weight.reshape(members, *layer.weight.shape[-2:])


def _bias(layer, members):
    """A layer's bias as ``(members, out)`` (an ensemble's is stored ``(members, 1, out)``)."""
    return layer.bias.reshape(members, -1)


def pack_weights(model, spec, device):
    """Float32 tiles for the kernel, each with a leading member axis (one member for a single network): widths
    padded to WP with zeros, input normalisation folded into W', b'.

    x̃ = x * scale + shift, so x̃ W + b = x (scale ⊙ W) + (b + shift W).
    """
    width, wp, members = model.width, _pow2(model.width, 16), members_of(model)
    modified = isinstance(model, ModifiedMLP)
    inputs = [model.encoder_u, model.encoder_v, model.input_layer] if modified else [model.input_layer]
    hidden = model.gates if modified else model.hidden
    f32 = dict(dtype=torch.float32, device=device)
    w_in = torch.zeros(members, len(inputs), model.in_dim, wp, **f32)
    b_in = torch.zeros(members, len(inputs), wp, **f32)
    for k, layer in enumerate(inputs):
        weight = _weight(layer, members).mT  # (members, in, out)
        w_in[:, k, :, :width] = weight * model.in_scale[:, None]
        b_in[:, k, :width] = _bias(layer, members) + (model.in_shift @ weight)
    w_h = torch.zeros(members, len(hidden), PLANES, wp, wp, **f32)  # see PLANES
    b_h = torch.zeros(members, len(hidden), wp, **f32)
    for k, layer in enumerate(hidden):
        w = w_h[:, k]
        w[:, 0, :width, :width] = _weight(layer, members).mT
        w[:, 1] = round_tf32(w[:, 0].mT)
        w[:, 2] = round_tf32(w[:, 0].mT - w[:, 1])
        w[:, 3] = round_tf32(w[:, 0])
        w[:, 4] = round_tf32(w[:, 0] - w[:, 3])
        b_h[:, k, :width] = _bias(layer, members)
    w_out = torch.zeros(members, model.out_dim, wp, **f32)
    w_out[:, :, :width] = _weight(model.output, members)
    dirs_s, dirs_o, map_s, map_o, map_ss = _spec_tables(spec, torch.device(device))
    return dict(
        tensors=(w_in, b_in, dirs_s, dirs_o, w_h, b_h, w_out,
                 _bias(model.output, members).detach().float().contiguous(), map_s, map_o, map_ss),
        meta=dict(IN_DIM=model.in_dim, OUT_DIM=model.out_dim, WP=wp, DEPTH=len(hidden), NSP=dirs_s.numel(),
                  NOP=dirs_o.numel(), MODIFIED=modified, ENSEMBLE=is_ensemble(model)),
    )


@functools.lru_cache(maxsize=64)
def _spec_tables(spec, device):
    """The kernel's int32 tables of a derivative spec: the channel groups' directions, second (d_s, s_s aligned)
    then first-only (d_o), and where each lands in the public layout. Made once per spec and device: a copy from
    the host, which a CUDA graph could not capture."""
    first_only = [i for i in spec.first if i not in spec.second]
    nsp, nop = _pow2(len(spec.second)), _pow2(len(first_only))
    public_first = {i: 1 + k for k, i in enumerate(spec.first)}
    tables = (_padded(spec.second, nsp), _padded(first_only, nop),
              _padded([public_first.get(i, -1) for i in spec.second], nsp),
              _padded([public_first[i] for i in first_only], nop),
              _padded([1 + len(spec.first) + k for k in range(len(spec.second))], nsp))
    return tuple(torch.tensor(table, dtype=torch.int32, device=device) for table in tables)


def per_member_nu(model, nu, device):
    """ν as float32 with one value per member (one for a single network), or one clear error."""
    nu = torch.as_tensor(nu, dtype=torch.float32, device=device)
    if nu.numel() != members_of(model):
        raise PinnfastError(f"nu must have one value per ensemble member ({members_of(model)}), got shape "
                            f"{tuple(nu.shape)}")
    return nu


def point_stride(x):
    """Floats between two members' points: 0 when they share ``x`` of shape ``(N, in)``."""
    return x.shape[-2] * x.shape[-1] if x.dim() == 3 else 0


def launch(model, x, spec, out, nu, burgers, precision, block=None):
    """Run the kernel over every tile of ``x`` and every ensemble member into ``out`` (jets layout ``(C, [K,] N,
    out)``, or ``([K,] N, 4)`` for Burgers; ``nu`` one per member); tile and warps from the launch table unless
    ``block`` is given."""
    check_block(block)
    n = x.shape[-2]
    if n == 0:
        return out
    packed = packed_weights(model, spec, x.device)
    meta = packed["meta"]
    best_block, warps = launch_config(meta, burgers, precision)
    block = block or best_block
    members = members_of(model)

    def run(block):
        mlp_jets_kernel[(triton.cdiv(n, block), members)](
            x.contiguous(), *packed["tensors"], nu, out, n, members, point_stride(x), **meta,
            BURGERS=burgers, B=block, PRECISION=precision, num_warps=warps, num_stages=1)
        return out
    return halving_tile_on_overflow(run, block, model, spec)


def halving_tile_on_overflow(run, block, model, spec):
    """``run(block)``, halving the tile while the GPU's shared memory is too small for it (shared memory grows with
    tile, width and channels)."""
    while True:
        try:
            return run(block)
        except OutOfResources as exc:
            if block == BLOCKS[0]:
                raise PinnfastError(f"the triton kernel does not fit this GPU at width {model.width} with "
                                    f"{spec.n_outputs - 1} derivative channels even with {block}-point tiles "
                                    f"({exc}); use fewer channels, a smaller width or backend='torch'") from None
            block //= 2


def burgers_fields(model, x, nu, precision=DEFAULT_PRECISION, block=None, out=None):
    """Fused Burgers: ``(N, 4)`` = (u, v, r_u, r_v) for points (x, y, t), in one launch, without autograd. An
    ensemble of K gives ``(K, N, 4)``, each member on its points (``x`` shared ``(N, 3)`` or ``(K, N, 3)``) with
    its own ν (K values)."""
    from pinnfast.burgers import FIRST, SECOND
    from pinnfast.jets import JetSpec

    check_supported(model, x, precision)
    if model.in_dim != 3 or model.out_dim != 2:
        raise PinnfastError(f"Burgers needs a model (x, y, t) -> (u, v); got in_dim {model.in_dim}, "
                            f"out_dim {model.out_dim}")
    nu = per_member_nu(model, nu, x.device).detach().reshape(-1).contiguous()
    shape = (*((model.members,) if is_ensemble(model) else ()), x.shape[-2], 4)
    if out is None:
        out = torch.empty(shape, dtype=torch.float32, device=x.device)
    elif out.shape != shape or out.dtype != torch.float32 or out.device != x.device or not out.is_contiguous():
        raise PinnfastError(f"out must be a contiguous float32 tensor of shape {shape} on {x.device}; got "
                            f"{'a non-contiguous ' if not out.is_contiguous() else ''}{out.dtype} "
                            f"{tuple(out.shape)} on {out.device}")
    return launch(model, x, JetSpec(FIRST, SECOND), out, nu, True, precision, block)
