"""Backward of the jets kernel: from upstream gradients on the jets (or from the Burgers residual loss, computed in
the kernel) to the gradient of every weight and bias, in stages through a stash in memory.

Per chunk of points, five stages of one kernel (``STAGES``), each its own launch with its own tile and warps:
FORWARD_LAYER, once per hidden layer (the forward with the rules and tile layout of ``jets.py``, same helpers, same
products, stashing each hidden layer's input jet T_k and pre-activation Z_k, and M3's D = V − U); OUTPUT_LAYER (the
output layer's partials and ∂L/∂T of the last hidden jet); per hidden layer, last first, HIDDEN_LAYER (gate and
tanh rules back to ∂Z, ∂b, ∂T = W ∂Z) and WEIGHT_GRADIENT (∂W += T ∂Zᵀ); INPUT_LAYER (the input layer's partials,
and M3's encoders' from their jets' gradients, summed over the gate layers in the stash). One launch did it all
before: what it carried from layer to layer spilled registers at widths 64 and 128; split like this, every stage
compiles for sm_90a without spills at every width (BENCHMARKS.md, static report), at the cost of the stash's
traffic. The stash holds ``_stash_jets`` jets per point, in a layout that no stage's tile decides
(``_stash_place``); point sets whose stash would pass ``STASH_FLOATS`` go through in chunks.

Every rule's backward is register-only per (unit, point), like its forward; a layer's two matrix products run over
all channels of a tile at once (W_k's tf32 halves split on the host, as the forward's Wᵀ). Each persistent program
takes tiles pid, pid + P, ... in every stage and owns its partial gradients (zeroed in its first launch,
accumulated tile after tile and stage after stage in a fixed order); the host sums the P partials with
``torch.sum``: no float atomics, so two identical calls give bit-identical gradients.

An ensemble (``ENSEMBLE``) adds a grid axis for the member: each program works on one member's points, weights and
stash and owns that member's partials; the host sums each member's partials apart.

Burgers mode: the upstream gradient is that of ``coef · Σ (r_u² + r_v²)`` (``coef = 1/N``: the trainer's
``L_r = mean(r_u²) + mean(r_v²)``), formed in registers from the tile's outputs, so the residuals never reach
memory; OUTPUT_LAYER also accumulates the loss and ∂L/∂ν.

Backward of the rules (docs/math.md; a = ∂L/∂(output jet), per (unit, point), p the first slot aligned with second s):
- tanh, h = tanh(z_0), g = 1 − h²: ∂z_i = g a_i (+ for p: −4 h g z_p a_s), ∂z_s = g a_s,
  ∂z_0 = g (a_0 − 2 g Σ_s a_s z_p² − 2 h Σ_{i,s} a (z − [s] 2 h z_p²)).
- gate H = U + Z ⊙ D, D = V − U: ∂Z_0 = Σ_slots a D, ∂Z_i = a_i D_0 (+ for p: 2 a_s D_p), ∂Z_s = a_s D_0; ∂D the
  same with Z and D swapped; ∂U = a − ∂D, ∂V = ∂D (summed over the layers, then through the encoders).
"""
import torch
import triton
import triton.language as tl

from pinnfast.burgers import FIRST, SECOND
from pinnfast.errors import PinnfastError
from pinnfast.jets import JetSpec
from pinnfast.models import ModifiedMLP

from .jets import (DEFAULT_PRECISION, PLANES, _activate, _burgers_terms, _input_layers, _input_rule, _linear, _member,
                   _output_channel, _pre_activation, _product, _slot_layout, _slot_rows, _tanh, _tanh_rule,
                   _value_and_partner, slots_per_half,
                   BLOCKS, backward_launch_config, check_block, check_supported, halving_tile_on_overflow, is_ensemble, launch,
                   members_of, packed_weights, per_member_nu, point_stride)

BURGERS_SPEC = JetSpec(FIRST, SECOND)


@triton.jit
def _over_slots(x):
    """Σ over a (unit, point)'s slots (axes half, slot_bits, slot_bit0), kept as size-1 axes."""
    return tl.sum(tl.sum(tl.sum(x, axis=5, keep_dims=True), axis=3, keep_dims=True), axis=2, keep_dims=True)


@triton.jit
def _from_second(x, is_second):
    """x at each second slot s, seen from the first-half slot aligned with it (a sum over the half axis)."""
    return tl.sum(tl.where(is_second, x, 0.0), axis=2, keep_dims=True)


@triton.jit
def _tanh_backward(z, a, is_value, is_ds, is_second, is_live, half):
    """∂L/∂z for the tanh rule's input jet z, from a = ∂L/∂(its output jet)."""
    z_val, z_part = _value_and_partner(z, is_value, half)
    h = _tanh(z_val)
    g = 1.0 - h * h
    a = tl.where(is_live, a, 0.0)
    squares = tl.where(is_second, z_part * z_part, 0.0)
    d_g = _over_slots(tl.where(is_value, 0.0, a) * (z - 2.0 * h * squares))
    d_h = _over_slots(tl.where(is_value, a, 0.0) - 2.0 * g * squares * a) - 2.0 * h * d_g
    partner = _from_second(a * z_part, is_second)
    first = g * a - tl.where((half == 0) & is_ds, 4.0 * h * g * partner, 0.0)
    return tl.where(is_value, g * d_h, tl.where(is_live, first, 0.0))


@triton.jit
def _gate_backward(a, z, d, is_value, is_ds, is_second, half):
    """H = U + Z ⊙ D on jets: (∂L/∂Z, ∂L/∂D) from a = ∂L/∂H (zero on dead slots)."""
    z_val, z_part = _value_and_partner(z, is_value, half)
    d_val, d_part = _value_and_partner(d, is_value, half)
    a_second = tl.where((half == 0) & is_ds, 2.0 * _from_second(a, is_second), 0.0)
    grad_z = tl.where(is_value, _over_slots(a * d), a * d_val + a_second * d)
    grad_d = tl.where(is_value, _over_slots(a * z), a * z_val + a_second * z)
    return grad_z, grad_d


@triton.jit
def _encoder_backward(x_ptr, rows, row_mask, w_ptr, b_ptr, grad_jet, u, dir_slot, is_value, is_second, g_w_ptr,
                      g_b_ptr, IN_DIM: tl.constexpr, WP: tl.constexpr):
    """An encoder (h = tanh(x W' + b'), r = W'[direction], both recomputed) from ∂L/∂(its jet h; g r; −2 h g r²),
    summed over the gate layers, into its partial ∂W', ∂b': through ∂L/∂h per (unit, point) and ∂L/∂r per (unit,
    slot), the two things the jet is made of (∂/∂h: 1; −2 h r; −2 r² (1 − 3h²). ∂/∂r: g; −4 h g r)."""
    h = _tanh(_pre_activation(x_ptr, rows, row_mask, w_ptr, b_ptr, u, IN_DIM, WP))
    r = _slot_rows(w_ptr, dir_slot, u, WP)
    g = 1.0 - h * h
    by_h = tl.where(is_value, 1.0, tl.where(is_second, -2.0 * r * r * (1.0 - 3.0 * h * h), -2.0 * h * r))
    by_r = tl.where(is_value, 0.0, tl.where(is_second, -4.0 * h * g * r, g))
    grad_r = tl.sum(tl.sum(grad_jet * by_r, axis=4, keep_dims=True), axis=1, keep_dims=True)
    _input_weight_grads(x_ptr, rows, row_mask, g * _over_slots(grad_jet * by_h), grad_r, dir_slot, g_w_ptr, g_b_ptr,
                        IN_DIM, WP)


@triton.jit
def _input_weight_grads(x_ptr, rows, row_mask, grad_pre, grad_row, dir_slot, g_w_ptr, g_b_ptr, IN_DIM: tl.constexpr,
                        WP: tl.constexpr):
    """An input-side layer's partial ∂b' += Σ ∂L/∂pre and ∂W'[i] += Σ x_i ∂L/∂pre + Σ over the slots of direction i
    of ∂L/∂(W'[i]) (``grad_row``: the slots' rows W'[dir] enter the jet directly)."""
    units = tl.arange(0, WP)
    _accumulate(g_b_ptr, units, _unit_sum(grad_pre, WP))
    for i in tl.static_range(IN_DIM):
        x_i = tl.load(x_ptr + rows * IN_DIM + i, mask=row_mask, other=0.0)
        _accumulate(g_w_ptr + i * WP, units,
                    _unit_sum(grad_pre * x_i, WP) + _unit_sum(tl.where(dir_slot == i, grad_row, 0.0), WP))


@triton.jit
def _unit_sum(x, WP: tl.constexpr):
    """Σ over every axis but the first (units): (WP,)."""
    return tl.sum(tl.reshape(x, (WP, x.numel // WP)), axis=1)


@triton.jit
def _accumulate(ptr, offsets, value):
    tl.store(ptr + offsets, tl.load(ptr + offsets) + value)


@triton.jit
def _input_backward(x_ptr, rows, row_mask, w_ptr, b_ptr, g_w_ptr, g_b_ptr, a, u, dir_slot, is_value, is_ds,
                    is_second, is_live, half, IN_DIM: tl.constexpr, WP: tl.constexpr):
    """An input layer (z = x W' + b', z_i = W'[i], z_ii = 0, then tanh) from a = ∂L/∂(its output jet): into its
    partial ∂W' (IN_DIM, WP) and ∂b' (WP,)."""
    pre = _pre_activation(x_ptr, rows, row_mask, w_ptr, b_ptr, u, IN_DIM, WP)
    z = tl.where(is_value, pre, tl.where(half == 0, _slot_rows(w_ptr, dir_slot, u, WP), 0.0))
    grad_z = _tanh_backward(z, a, is_value, is_ds, is_second, is_live, half)
    _input_weight_grads(x_ptr, rows, row_mask, tl.where(is_value, grad_z, 0.0), tl.where(half == 0, grad_z, 0.0),
                        dir_slot, g_w_ptr, g_b_ptr, IN_DIM, WP)


@triton.jit
def _burgers_slot_grads(grad_r, grad_value, u_val, v_val, nu, d_x, d_y, d_t, is_value, is_second):
    """∂L/∂y per slot for one output (u or v), from ∂L/∂(its residual) per point: ∂_x ← grad_r u, ∂_y ← grad_r v,
    ∂_t ← grad_r, the second derivatives ← −ν grad_r; the value slot gets ``grad_value`` (both residuals' terms)."""
    g = _jet_points(grad_r)
    slots = tl.where(d_x, g * _jet_points(u_val), tl.where(d_y, g * _jet_points(v_val), tl.where(
        d_t, g, tl.where(is_second, -nu * g, 0.0))))
    return tl.where(is_value, _jet_points(grad_value), slots)


@triton.jit
def _jet_points(x):
    """A per-point (PH, 4) tensor in the 6-D tile view (1, PH, 1, 1, 4, 1)."""
    return tl.reshape(x, (1, x.shape[0], 1, 1, 4, 1))


@triton.jit
def _zero(ptr, SIZE: tl.constexpr):
    tl.store(ptr + tl.arange(0, SIZE), tl.zeros((SIZE,), tl.float32))


# the stash, per point: Z_0 … Z_{DEPTH−1} (each then its ∂Z), T_0 … T_{DEPTH−1}, then these (the MLP: only GRAD_T)
GRAD_T = tl.constexpr(0)  # ∂L/∂T of the layer being walked back (first T_DEPTH)
D_JET = tl.constexpr(1)  # M3's D = V − U
GRAD_U = tl.constexpr(2)  # M3: ∂L/∂U and ∂L/∂V of the encoders' jets, summed over the gate layers
GRAD_V = tl.constexpr(3)


@triton.jit
def _program(x_ptr, w_in_ptr, b_in_ptr, w_h_ptr, b_h_ptr, w_out_ptr, b_out_ptr, nu_ptr, stash_ptr, g_w_in_ptr,
             g_b_in_ptr, g_w_h_ptr, g_b_h_ptr, g_w_out_ptr, g_b_out_ptr, g_scalar_ptr, x_stride, stash_member,
             IN_DIM: tl.constexpr, OUT_DIM: tl.constexpr, WP: tl.constexpr, DEPTH: tl.constexpr,
             MODIFIED: tl.constexpr, ENSEMBLE: tl.constexpr, H: tl.constexpr):
    """This program's view: its member's points, weights, ν and stash, and its own partials (layout:
    ``new_partials``)."""
    NIN: tl.constexpr = 3 if MODIFIED else 1
    slot = tl.program_id(0).to(tl.int64)
    if ENSEMBLE:
        member = tl.program_id(1).to(tl.int64)
        slot += member * tl.num_programs(0)
        stash_ptr += member * stash_member
        x_ptr, w_in_ptr, b_in_ptr, w_h_ptr, b_h_ptr, w_out_ptr, b_out_ptr, nu_ptr = _member(
            x_ptr, w_in_ptr, b_in_ptr, w_h_ptr, b_h_ptr, w_out_ptr, b_out_ptr, nu_ptr, member, x_stride, IN_DIM,
            OUT_DIM, WP, DEPTH, MODIFIED)
    return (x_ptr, w_in_ptr, b_in_ptr, w_h_ptr, b_h_ptr, w_out_ptr, b_out_ptr, nu_ptr, stash_ptr,
            g_w_in_ptr + slot * NIN * IN_DIM * WP, g_b_in_ptr + slot * NIN * WP, g_w_h_ptr + slot * DEPTH * WP * WP,
            g_b_h_ptr + slot * DEPTH * WP, g_w_out_ptr + slot * OUT_DIM * WP, g_b_out_ptr + slot * 4,
            g_scalar_ptr + slot * 2)


@triton.jit
def _zero_partials(g_w_in, g_b_in, g_w_h, g_b_h, g_w_out, g_b_out, g_scalar, IN_DIM: tl.constexpr,
                   OUT_DIM: tl.constexpr, WP: tl.constexpr, DEPTH: tl.constexpr, MODIFIED: tl.constexpr):
    """A program's partials, zeroed by the program itself before the first chunk's launches add to them."""
    NIN: tl.constexpr = 3 if MODIFIED else 1
    for i in tl.static_range(NIN * IN_DIM):
        _zero(g_w_in + i * WP, WP)
    for i in tl.static_range(NIN):
        _zero(g_b_in + i * WP, WP)
    for row in range(DEPTH * WP):  # ∂W_k row by row: one (WP, WP) block of zeros would fill the registers
        _zero(g_w_h + row * WP, WP)
    for k in range(DEPTH):
        _zero(g_b_h + k * WP, WP)
    for o in tl.static_range(OUT_DIM):
        _zero(g_w_out + o * WP, WP)
    _zero(g_b_out, 4)
    _zero(g_scalar, 2)


@triton.jit
def _tile_rows(tile, row0, n_chunk, ph, pl, B: tl.constexpr):
    """A tile's rows in x (its chunk starts at ``row0``) and their mask."""
    local = tile.to(tl.int64) * B + ph * 4 + pl
    return row0 + local, local < n_chunk


@triton.jit
def _stash_place(stash_ptr, tile, n_chunk, u, ph, pl, half, j, WP: tl.constexpr, B: tl.constexpr, H: tl.constexpr):
    """A tile's place in the stash: its first float in the first stash jet, its jet's offsets there (in the tile's
    6-D view) and the mask of the quads (4 points) that the stashing forward wrote. The stash is quad-major (per
    quad, unit after unit, the quad's 2H slots × 4 points in the tile's own order), so that its layout does not
    depend on the tile and every (quad, unit) row is one contiguous run."""
    offsets = (ph * WP + u) * (8 * H) + ((half * (H // 2) + j // 2) * 4 + pl) * 2 + j % 2
    first_quad = tile.to(tl.int64) * (B // 4)
    return stash_ptr + first_quad * (WP * 8 * H), offsets, first_quad + ph < tl.cdiv(n_chunk, 4)


@triton.jit
def _stash_load(ptr, offsets, written):
    return tl.load(ptr + offsets, mask=written, other=0.0)


@triton.jit
def _stash_store(ptr, offsets, jet):
    tl.store(ptr + offsets, jet)


@triton.jit
def _forward_tile(x_ptr, rows, row_mask, w_in_ptr, b_in_ptr, w_h_ptr, b_h_ptr, layer, place, offsets, written, jet, u,
                  half, dir_slot, is_value, is_second, is_live, IN_DIM: tl.constexpr, WP: tl.constexpr,
                  DEPTH: tl.constexpr, MODIFIED: tl.constexpr, NC: tl.constexpr, PRECISION: tl.constexpr):
    """FORWARD_LAYER: hidden layer ``layer``'s forward with the rules and tile layout of ``jets.py``, from its input
    jet T (the input layers' for the first; stashed by the launch before for the others), stashing its
    pre-activation Z and its output jet (T_DEPTH where the output layer's ∂L/∂T will go). The first also stashes
    T_0 and M3's D = V − U (once per tile, as difference_jet once per network). One layer per launch: a loop over
    the layers, with the stores, spilled at WP = 128."""
    t, h_u, h_v, r_u, r_v = _input_layers(x_ptr, rows, row_mask, w_in_ptr, b_in_ptr, u, dir_slot, is_value,
                                          is_second, IN_DIM, WP, MODIFIED)
    if layer == 0:
        _stash_store(place + DEPTH * jet, offsets, t)
        if MODIFIED:
            _stash_store(place + (2 * DEPTH + D_JET) * jet, offsets,
                         _input_rule(h_v, r_v, is_value, is_second) - _input_rule(h_u, r_u, is_value, is_second))
    else:
        t = _stash_load(place + (DEPTH + layer) * jet, offsets, written)
    z = _linear(t, w_h_ptr + layer * PLANES * WP * WP, b_h_ptr + layer * WP, u, is_value, WP, NC, PRECISION)
    _stash_store(place + layer * jet, offsets, z)
    output = tl.where(layer + 1 < DEPTH, DEPTH + layer + 1, 2 * DEPTH + GRAD_T)  # T_DEPTH goes where ∂L/∂T will
    _stash_store(place + output * jet, offsets, _activate(z, h_u, h_v, r_u, r_v, is_value, is_second, is_live, half,
                                                          MODIFIED))


@triton.jit
def _output_layer_tile(t, w_out_ptr, b_out_ptr, nu_ptr, grad_out_ptr, map_s_ptr, map_o_ptr, map_ss_ptr, rows,
                       row_mask, g_w_out, g_b_out, g_scalar, N, members, member, coef, u, half, j, is_value, is_ds,
                       is_do, is_second, OUT_DIM: tl.constexpr, WP: tl.constexpr, NSP: tl.constexpr,
                       BURGERS: tl.constexpr, B: tl.constexpr, H: tl.constexpr):
    """OUTPUT_LAYER, from the last hidden jet ``t``: the output layer's partials (in Burgers mode also the loss and
    ∂L/∂ν, the residuals formed here in registers) and a = ∂L/∂T_DEPTH = Σ_o W_out[o] ∂L/∂y_o."""
    units = tl.arange(0, WP)
    if BURGERS:
        w_u = tl.load(w_out_ptr + u)
        w_v = tl.load(w_out_ptr + WP + u)
        u_val, v_val, u_x, u_y, u_t, lap_u, v_x, v_y, v_t, lap_v = _burgers_terms(
            tl.sum(t * w_u, axis=0), tl.sum(t * w_v, axis=0), b_out_ptr, half, j, is_value, is_second)
        nu = tl.load(nu_ptr)
        valid = tl.reshape(row_mask, (B // 4, 4))
        res_u = tl.where(valid, u_t + u_val * u_x + v_val * u_y - nu * lap_u, 0.0)
        res_v = tl.where(valid, v_t + u_val * v_x + v_val * v_y - nu * lap_v, 0.0)
        g_u = 2.0 * coef * res_u  # ∂L/∂r
        g_v = 2.0 * coef * res_v
        _accumulate(g_scalar, 0, coef * tl.sum(res_u * res_u + res_v * res_v))
        _accumulate(g_scalar, 1, -tl.sum(g_u * lap_u + g_v * lap_v))
        d_x = (half == 0) & (j == 1)
        d_y = (half == 0) & (j == 2)
        d_t = (half == 0) & (j == 3)
        grad_u = _burgers_slot_grads(g_u, g_u * u_x + g_v * v_x, u_val, v_val, nu, d_x, d_y, d_t, is_value,
                                     is_second)
        grad_v = _burgers_slot_grads(g_v, g_u * u_y + g_v * v_y, u_val, v_val, nu, d_x, d_y, d_t, is_value,
                                     is_second)
        a = w_u * grad_u + w_v * grad_v
        _accumulate(g_w_out, units, _unit_sum(t * grad_u, WP))
        _accumulate(g_w_out + WP, units, _unit_sum(t * grad_v, WP))
        _accumulate(g_b_out, 0, tl.sum(tl.where(is_value, grad_u, 0.0)))
        _accumulate(g_b_out, 1, tl.sum(tl.where(is_value, grad_v, 0.0)))
    else:
        channel = _output_channel(j, half, is_value, is_ds, is_do, is_second, map_s_ptr, map_o_ptr, map_ss_ptr, NSP)
        a = tl.zeros((WP, B // 4, 2, H // 2, 4, 2), tl.float32)
        for o in tl.static_range(OUT_DIM):
            grad_y = tl.load(grad_out_ptr + ((tl.maximum(channel, 0).to(tl.int64) * members + member) * N + rows)
                             * OUT_DIM + o, mask=(channel >= 0) & row_mask, other=0.0)
            a += tl.load(w_out_ptr + o * WP + u) * grad_y
            _accumulate(g_w_out + o * WP, units, _unit_sum(t * grad_y, WP))
            _accumulate(g_b_out, o, tl.sum(tl.where(is_value, grad_y, 0.0)))
    return a


@triton.jit
def _hidden_layer_tile(layer, place, offsets, written, jet, w_h_ptr, g_b_h, half, is_value, is_ds, is_second,
                       is_live, WP: tl.constexpr, DEPTH: tl.constexpr, MODIFIED: tl.constexpr, NC: tl.constexpr,
                       PRECISION: tl.constexpr):
    """HIDDEN_LAYER, all but ∂W: from the stashed ∂L/∂T_{layer+1}, Z (and M3's D), ∂Z and the partial ∂b; ∂Z goes
    into Z's place (for WEIGHT_GRADIENT), ∂L/∂T_layer = W ∂Z into ∂L/∂T_{layer+1}'s; M3's encoders' jets U and V
    get a − ∂D and ∂D, summed over the gate layers in the stash (INPUT_LAYER takes them through the encoders)."""
    a = _stash_load(place + (2 * DEPTH + GRAD_T) * jet, offsets, written)
    z = _stash_load(place + layer * jet, offsets, written)
    if MODIFIED:
        a = tl.where(is_live, a, 0.0)
        z_act, _h, _g, _z_part = _tanh_rule(z, is_value, is_second, half)
        grad_z_jet, grad_d = _gate_backward(a, tl.where(is_live, z_act, 0.0),
                                            _stash_load(place + (2 * DEPTH + D_JET) * jet, offsets, written),
                                            is_value, is_ds, is_second, half)
        grad_u = a - grad_d
        if layer < DEPTH - 1:
            grad_u += _stash_load(place + (2 * DEPTH + GRAD_U) * jet, offsets, written)
            grad_d += _stash_load(place + (2 * DEPTH + GRAD_V) * jet, offsets, written)
        _stash_store(place + (2 * DEPTH + GRAD_U) * jet, offsets, grad_u)
        _stash_store(place + (2 * DEPTH + GRAD_V) * jet, offsets, grad_d)
        a = grad_z_jet
    grad_z = _tanh_backward(z, a, is_value, is_ds, is_second, is_live, half)
    _accumulate(g_b_h + layer * WP, tl.arange(0, WP), _unit_sum(tl.where(is_value, grad_z, 0.0), WP))
    _stash_store(place + layer * jet, offsets, grad_z)
    _stash_store(place + (2 * DEPTH + GRAD_T) * jet, offsets,
                 _product(grad_z, w_h_ptr + layer * PLANES * WP * WP, 3, False, WP, NC, PRECISION))


@triton.jit
def _input_layer_tile(x_ptr, rows, row_mask, w_in_ptr, b_in_ptr, g_w_in, g_b_in, place, offsets, written, jet, u,
                      half, dir_slot, is_value, is_ds, is_second, is_live, IN_DIM: tl.constexpr, WP: tl.constexpr,
                      DEPTH: tl.constexpr, MODIFIED: tl.constexpr):
    """INPUT_LAYER, from the stashed ∂L/∂T_0: the input layer's partials (M3: H_1's, and the encoders' from their
    jets' gradients summed over the gate layers)."""
    LAYER: tl.constexpr = IN_DIM * WP
    FIRST: tl.constexpr = 2 if MODIFIED else 0
    if MODIFIED:
        _encoder_backward(x_ptr, rows, row_mask, w_in_ptr, b_in_ptr,
                          _stash_load(place + (2 * DEPTH + GRAD_U) * jet, offsets, written), u, dir_slot, is_value,
                          is_second, g_w_in, g_b_in, IN_DIM, WP)
        _encoder_backward(x_ptr, rows, row_mask, w_in_ptr + LAYER, b_in_ptr + WP,
                          _stash_load(place + (2 * DEPTH + GRAD_V) * jet, offsets, written), u, dir_slot, is_value,
                          is_second, g_w_in + LAYER, g_b_in + WP, IN_DIM, WP)
    _input_backward(x_ptr, rows, row_mask, w_in_ptr + FIRST * LAYER, b_in_ptr + FIRST * WP, g_w_in + FIRST * LAYER,
                    g_b_in + FIRST * WP, _stash_load(place + (2 * DEPTH + GRAD_T) * jet, offsets, written), u, dir_slot,
                    is_value, is_ds, is_second, is_live, half, IN_DIM, WP)


FORWARD_LAYER, OUTPUT_LAYER, HIDDEN_LAYER, WEIGHT_GRADIENT, INPUT_LAYER = (tl.constexpr(stage) for stage in range(5))


@triton.jit(do_not_specialize=["row0", "layer", "zero_partials"])
def mlp_jets_backward_kernel(
    x_ptr, w_in_ptr, b_in_ptr, dirs_s_ptr, dirs_o_ptr, w_h_ptr, b_h_ptr, w_out_ptr, b_out_ptr,
    map_s_ptr, map_o_ptr, map_ss_ptr, grad_out_ptr, nu_ptr, stash_ptr,
    g_w_in_ptr, g_b_in_ptr, g_w_h_ptr, g_b_h_ptr, g_w_out_ptr, g_b_out_ptr, g_scalar_ptr, N, members, x_stride,
    row0, n_chunk, stash_points, layer, zero_partials, coef,
    IN_DIM: tl.constexpr, OUT_DIM: tl.constexpr, WP: tl.constexpr, DEPTH: tl.constexpr,
    NSP: tl.constexpr, NOP: tl.constexpr, MODIFIED: tl.constexpr, ENSEMBLE: tl.constexpr, BURGERS: tl.constexpr,
    STASH_JETS: tl.constexpr, STAGE: tl.constexpr, B: tl.constexpr, PRECISION: tl.constexpr,
):
    """One stage of the backward (``STAGES``) over tiles pid, pid + P, ... of a chunk of points (rows ``row0`` …
    ``row0 + n_chunk − 1``), through the stash; ``layer``: the hidden layer of HIDDEN_LAYER and WEIGHT_GRADIENT.
    The first FORWARD_LAYER launch (``zero_partials``) zeroes this program's partials (nothing is read before it is
    written). The stash: STASH_JETS jets of ``jet`` floats per member, each ``stash_points`` points (a multiple of
    the largest tile)."""
    H: tl.constexpr = slots_per_half(1 + NSP + NOP)
    NC: tl.constexpr = 2 * H * B
    jet = stash_points * (2 * H) * WP  # computed here, not passed: the compiler then knows its alignment
    (x_ptr, w_in_ptr, b_in_ptr, w_h_ptr, b_h_ptr, w_out_ptr, b_out_ptr, nu_ptr, stash, g_w_in, g_b_in, g_w_h, g_b_h,
     g_w_out, g_b_out, g_scalar) = _program(
        x_ptr, w_in_ptr, b_in_ptr, w_h_ptr, b_h_ptr, w_out_ptr, b_out_ptr, nu_ptr, stash_ptr, g_w_in_ptr, g_b_in_ptr,
        g_w_h_ptr, g_b_h_ptr, g_w_out_ptr, g_b_out_ptr, g_scalar_ptr, x_stride, STASH_JETS * jet, IN_DIM, OUT_DIM, WP,
        DEPTH, MODIFIED, ENSEMBLE, H)
    member = 0
    if ENSEMBLE:
        member = tl.program_id(1).to(tl.int64)
    if STAGE == FORWARD_LAYER:
        if zero_partials:
            _zero_partials(g_w_in, g_b_in, g_w_h, g_b_h, g_w_out, g_b_out, g_scalar, IN_DIM, OUT_DIM, WP, DEPTH,
                           MODIFIED)
    u, ph, pl, half, j, is_value, is_ds, is_do, is_second, is_live, dir_slot = _slot_layout(
        dirs_s_ptr, dirs_o_ptr, WP, NSP, NOP, B, H)
    grad_w = tl.zeros((WP, WP), tl.float32)  # WEIGHT_GRADIENT's ∂W [in, out], over all of the program's tiles
    tile = tl.program_id(0)
    while tile < tl.cdiv(n_chunk, B):  # (a while loop: the interpreter cannot range over a runtime bound)
        rows, row_mask = _tile_rows(tile, row0, n_chunk, ph, pl, B)
        place, offsets, written = _stash_place(stash, tile, n_chunk, u, ph, pl, half, j, WP, B, H)
        if STAGE == FORWARD_LAYER:
            _forward_tile(x_ptr, rows, row_mask, w_in_ptr, b_in_ptr, w_h_ptr, b_h_ptr, layer, place, offsets, written,
                          jet, u, half, dir_slot, is_value, is_second, is_live, IN_DIM, WP, DEPTH, MODIFIED, NC,
                          PRECISION)
        elif STAGE == OUTPUT_LAYER:
            _stash_store(place + (2 * DEPTH + GRAD_T) * jet, offsets, _output_layer_tile(
                _stash_load(place + (2 * DEPTH + GRAD_T) * jet, offsets, written), w_out_ptr, b_out_ptr, nu_ptr,
                grad_out_ptr, map_s_ptr, map_o_ptr, map_ss_ptr, rows, row_mask, g_w_out, g_b_out, g_scalar, N,
                members, member, coef, u, half, j, is_value, is_ds, is_do, is_second, OUT_DIM, WP, NSP, BURGERS, B,
                H))
        elif STAGE == HIDDEN_LAYER:
            _hidden_layer_tile(layer, place, offsets, written, jet, w_h_ptr, g_b_h, half, is_value, is_ds,
                               is_second, is_live, WP, DEPTH, MODIFIED, NC, PRECISION)
        elif STAGE == WEIGHT_GRADIENT:  # ∂W += T ∂Zᵀ, one product per tile over all its slots
            grad_w = tl.dot(tl.reshape(_stash_load(place + (DEPTH + layer) * jet, offsets, written), (WP, NC)),
                            tl.trans(tl.reshape(_stash_load(place + layer * jet, offsets, written), (WP, NC))),
                            grad_w, input_precision=PRECISION)
        else:
            _input_layer_tile(x_ptr, rows, row_mask, w_in_ptr, b_in_ptr, g_w_in, g_b_in, place, offsets, written,
                              jet, u, half, dir_slot, is_value, is_ds, is_second, is_live, IN_DIM, WP, DEPTH,
                              MODIFIED)
        tile += tl.num_programs(0)
    if STAGE == WEIGHT_GRADIENT:
        units = tl.arange(0, WP)
        _accumulate(g_w_h + layer * WP * WP, units[:, None] * WP + units[None, :], grad_w)


# ----------------------------------------------------------------------------------------------- host side
PROGRAMS_PER_SM = 2  # persistent programs: enough to fill the GPU, few partials to reduce
INTERPRETED_PROGRAMS = 2
STASH_FLOATS = 1 << 28  # the largest stash (1 GiB): larger point sets go through in chunks
# the backward's stages (their launches per chunk: launch_order), each with its own tile and warps from the backward
# table
STAGES = {name: stage.value for name, stage in [("forward_layer", FORWARD_LAYER), ("output_layer", OUTPUT_LAYER),
                                                ("hidden_layer", HIDDEN_LAYER), ("weight_gradient", WEIGHT_GRADIENT),
                                                ("input_layer", INPUT_LAYER)]}


def _stash_jets(meta):
    """Jets per point in the stash: Z and T of every hidden layer, then GRAD_T (and for M3 D_JET, GRAD_U, GRAD_V)."""
    return 2 * meta["DEPTH"] + 1 + (GRAD_V.value if meta["MODIFIED"] else GRAD_T.value)


def jet_floats(meta):
    """Floats per point of one jet in the stash: every slot of every unit."""
    return _slots(meta) * meta["WP"]


def _slots(meta):
    """Slots per unit's column group, 2H (the kernels' H)."""
    return 2 * slots_per_half(1 + meta["NSP"] + meta["NOP"])


def new_partials(meta, members, programs, device):
    """Per-member, per-program partial gradients of the packed weights. ``torch.empty``: each program zeroes its
    own."""
    nin, wp, depth = (3 if meta["MODIFIED"] else 1), meta["WP"], meta["DEPTH"]
    shapes = dict(w_in=(nin, meta["IN_DIM"], wp), b_in=(nin, wp), w_h=(depth, wp, wp), b_h=(depth, wp),
                  w_out=(meta["OUT_DIM"], wp), b_out=(4,), scalars=(2,))
    return {name: torch.empty(members, programs, *shape, dtype=torch.float32, device=device)
            for name, shape in shapes.items()}


def backward_programs(device, tiles, programs=None, members=1):
    """Persistent programs per member: ``programs`` if given, else 2 per SM on a GPU shared by the ensemble's
    members (2 under the interpreter); at least one, never more than there are tiles."""
    if programs is None:
        programs = (torch.cuda.get_device_properties(device).multi_processor_count * PROGRAMS_PER_SM // members
                    if device.type == "cuda" else INTERPRETED_PROGRAMS)
    return max(1, min(int(programs), tiles))


def chunk_points(meta, n, members=1, chunk=None):
    """Points per chunk: as many as ``chunk`` (all by default) while the stash of that many, for every member, fits
    in ``STASH_FLOATS`` (its offsets stay 32-bit), else the most that do, a multiple of the largest tile."""
    per_point = members * _stash_jets(meta) * jet_floats(meta)
    limit = max(BLOCKS[-1], STASH_FLOATS // per_point // BLOCKS[-1] * BLOCKS[-1])
    return min(n, chunk or limit, limit)


def stage_constexprs(meta, burgers, precision, stage):
    """The constexprs of a stage's launch but its tile ``B``."""
    return dict(meta, BURGERS=burgers, PRECISION=precision, STASH_JETS=_stash_jets(meta), STAGE=STAGES[stage])


def new_stash(meta, members, points, device):
    """The stash of a chunk of ``points`` points: ``torch.empty``, every jet is written before it is read (its
    points padded to the largest tile, so that every tile's last row lies inside)."""
    padded = triton.cdiv(points, BLOCKS[-1]) * BLOCKS[-1]
    return torch.empty(members, _stash_jets(meta), padded, _slots(meta), meta["WP"], dtype=torch.float32,
                       device=device)


def launch_order(depth):
    """(stage, layer) of a chunk's launches: the forward layer by layer, the output layer, the hidden layers back
    (each: the rules, then ∂W), the input layer."""
    forward = [("forward_layer", k) for k in range(depth)]
    back = [(stage, k) for k in reversed(range(depth)) for stage in ("hidden_layer", "weight_gradient")]
    return [*forward, ("output_layer", 0), *back, ("input_layer", 0)]


def launch_backward(model, x, spec, precision, *, grad_out=None, nu=None, block=None, programs=None, warps=None,
                    chunk=None):
    """Sums over the points of the packed weights' gradients, per ensemble member (dict of tensors with a leading
    member axis, see :func:`new_partials`), from ``grad_out`` (jets layout) or, when ``grad_out`` is None, from
    the Burgers residual loss at ν, one per member (then ``scalars`` = (L_r, ∂L_r/∂ν) per member).

    Per chunk of points (:func:`chunk_points`), the launches of :func:`launch_order`, each stage with its own tile
    and warps from the backward table. ``block``, ``warps`` and ``programs`` (per member) override the table for
    every stage (tuning, tests); ``chunk`` the points per chunk."""
    check_block(block)
    burgers = grad_out is None
    packed = packed_weights(model, spec, x.device)
    meta = packed["meta"]
    configs = {name: backward_launch_config(meta, burgers, precision, name) for name in STAGES}
    n, members = x.shape[-2], members_of(model)
    if n == 0:
        return {name: partial.zero_().sum(1) for name, partial in new_partials(meta, members, 1, x.device).items()}
    x = x.contiguous()
    dummy = x.new_zeros(1)
    grad_out = dummy if burgers else grad_out.contiguous().float()
    nu = dummy if nu is None else nu.detach().float().reshape(members).contiguous()
    points = chunk_points(meta, n, members, chunk)

    def run(largest):
        tiles = {name: (min(block or tile, largest), warps or tile_warps)
                 for name, (tile, tile_warps) in configs.items()}
        programs_used = backward_programs(x.device, triton.cdiv(points, min(t for t, _ in tiles.values())), programs,
                                          members)
        partials = new_partials(meta, members, programs_used, x.device)
        stash = new_stash(meta, members, points, x.device)
        for row0 in range(0, n, points):
            common = (x, *packed["tensors"], grad_out, nu, stash, *partials.values(), n, members, point_stride(x),
                      row0, min(points, n - row0), stash.shape[2])
            for name, layer in launch_order(meta["DEPTH"]):
                tile, tile_warps = tiles[name]
                first = row0 == 0 and name == "forward_layer" and layer == 0  # each program zeroes its partials
                mlp_jets_backward_kernel[(programs_used, members)](
                    *common, layer, int(first), 1.0 / n, **stage_constexprs(meta, burgers, precision, name), B=tile,
                    num_warps=tile_warps, num_stages=1)
        return {name: partial.sum(1) for name, partial in partials.items()}  # a fixed-order, atomic-free reduction

    return halving_tile_on_overflow(run, max(block or tile for tile, _ in configs.values()), model, spec)


def model_gradients(model, sums):
    """The packed gradients as one tensor per parameter of ``model``, in ``model.parameters()`` order (an
    ensemble's with their member axis): padding dropped, the input normalisation unfolded (W' = scale ⊙ Wᵀ,
    b' = b + shift Wᵀ)."""
    width = model.width
    modified = isinstance(model, ModifiedMLP)
    inputs = [model.encoder_u, model.encoder_v, model.input_layer] if modified else [model.input_layer]
    grads = {}
    for k, layer in enumerate(inputs):
        grad_w, grad_b = sums["w_in"][:, k, :, :width], sums["b_in"][:, k, :width]
        grads[layer.weight] = (grad_w * model.in_scale[:, None] + model.in_shift[:, None] * grad_b[:, None]).mT
        grads[layer.bias] = grad_b
    for k, layer in enumerate(model.gates if modified else model.hidden):
        grads[layer.weight] = sums["w_h"][:, k, :width, :width].mT
        grads[layer.bias] = sums["b_h"][:, k, :width]
    grads[model.output.weight] = sums["w_out"][:, :, :width]
    grads[model.output.bias] = sums["b_out"][:, :model.out_dim]
    return [grads[p].reshape(p.shape) for p in model.parameters()]


class TritonJets(torch.autograd.Function):
    """Jets by the fused forward kernel; their backward to the parameters by the backward kernel (∂/∂x, when
    asked, by differentiating the torch jets path)."""

    @staticmethod
    def forward(ctx, x, model, spec, precision, block, *params):
        ctx.model, ctx.spec, ctx.precision = model, spec, precision
        ctx.versions = [p._version for p in params]
        ctx.save_for_backward(x)
        member_axis = (model.members,) if is_ensemble(model) else ()
        out = torch.empty(spec.n_outputs, *member_axis, x.shape[-2], model.out_dim, dtype=torch.float32,
                          device=x.device)
        return launch(model, x, spec, out, out.new_zeros(1), False, precision, block)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        model = ctx.model
        if [p._version for p in model.parameters()] != ctx.versions:
            raise RuntimeError("model parameters were modified in place between the jets and their backward")
        grads = model_gradients(model, launch_backward(model, x, ctx.spec, ctx.precision, grad_out=grad_out))
        grad_x = None
        if ctx.needs_input_grad[0]:
            with torch.enable_grad():
                x = x.detach().requires_grad_(True)
                jets = model.taylor(x, ctx.spec)[ctx.spec.output_channels()]
                (grad_x,) = torch.autograd.grad(jets, x, grad_out)
        return (grad_x, None, None, None, None, *grads)


def triton_jets(model, x, spec, precision=DEFAULT_PRECISION, block=None):
    """``taylor_jets(..., backend="triton")``: jets in the public layout ``(C, N, out_dim)`` (an ensemble's
    ``(C, K, N, out_dim)``), float32, differentiable with respect to the parameters by the backward kernel."""
    check_supported(model, x, precision)
    return TritonJets.apply(x, model, spec, precision, block, *model.parameters())


class TritonBurgersLoss(torch.autograd.Function):
    """``L_r = mean(r_u²) + mean(r_v²)`` (one per member of an ensemble): the loss and its gradients to every
    parameter and to ν come from the backward kernel's stages in the forward (the residuals never reach memory);
    the backward only scales them."""

    @staticmethod
    def forward(ctx, x, nu, model, precision, programs, *params):
        sums = launch_backward(model, x, BURGERS_SPEC, precision, nu=nu, programs=programs)
        ctx.save_for_backward(sums["scalars"][:, 1].reshape(nu.shape).to(nu.dtype), *model_gradients(model, sums))
        ctx.ensemble = is_ensemble(model)
        loss = sums["scalars"][:, 0]
        return loss if ctx.ensemble else loss.reshape(())

    @staticmethod
    def backward(ctx, grad_loss):
        grad_nu, *grads = ctx.saved_tensors

        def scaled(g):  # an ensemble's member k by its own loss's upstream gradient
            return grad_loss.reshape(-1, *[1] * (g.dim() - 1)) * g if ctx.ensemble else grad_loss * g
        return (None, scaled(grad_nu), None, None, None, *(scaled(g) for g in grads))


def burgers_loss(model, x, nu, precision=DEFAULT_PRECISION, programs=None):
    """The fused Burgers residual loss at collocation points ``x`` (x, y, t): a scalar tensor, differentiable with
    respect to the model's parameters and to ``nu`` (a float or a tensor, e.g. ``log_nu.exp()``). An ensemble of K
    gives K losses, each member's on its points (``x`` shared ``(N, 3)`` or ``(K, N, 3)``) with its ν (K values)."""
    check_supported(model, x, precision)
    if model.in_dim != 3 or model.out_dim != 2:
        raise PinnfastError(f"Burgers needs a model (x, y, t) -> (u, v); got in_dim {model.in_dim}, "
                            f"out_dim {model.out_dim}")
    if x.shape[-2] == 0:
        raise PinnfastError("the Burgers loss needs at least one collocation point")
    nu = per_member_nu(model, nu, x.device)
    return TritonBurgersLoss.apply(x, nu, model, precision, programs, *model.parameters())
