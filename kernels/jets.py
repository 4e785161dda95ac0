"""Fused forward Taylor jets of MLP / ModifiedMLP: one program per tile of points, every layer in one launch.

The jet of a layer is four register tiles (MATH.md rules, same as ``pinnfast.jets``):
  ``val`` (B, WP)       the value
  ``d_s`` (NSP, B, WP)  first derivatives along the *second-derivative* directions (the tanh rule needs them)
  ``d_o`` (NOP, B, WP)  first derivatives along the remaining *first-only* directions
  ``s_s`` (NSP, B, WP)  pure second derivatives, aligned with ``d_s``
so the second-order rules are elementwise between aligned tiles. Channel groups are padded to a power of two and
padded channels start at zero, which every rule keeps at zero. Widths are padded to ``WP`` (power of two, ≥ 16)
with zero weights, so padded units stay at zero too. The encoders U and V are recomputed from the input tile at
every gate layer instead of being kept live (fewer registers), and nothing but the inputs and the weights is read:
a fused backward can recompute the forward of any tile the same way.
"""
import os
import weakref

import torch
import triton
import triton.language as tl
from triton.runtime.errors import OutOfResources

from pinnfast.errors import PinnfastError
from pinnfast.models import MLP, ModifiedMLP

from .launch_table import LAUNCH_TABLE


@triton.jit
def _tanh(z):
    """tanh from exp, accurate to a few ulp: a series for |z| < 0.1 avoids the cancellation in 1 − e^(−2|z|)."""
    a = tl.abs(z)
    t = tl.exp(-2.0 * a)
    z2 = z * z
    series = a * (1.0 + z2 * (-1.0 / 3.0 + z2 * (2.0 / 15.0 + z2 * (-17.0 / 315.0 + z2 * (62.0 / 2835.0)))))
    magnitude = tl.where(a < 0.1, series, (1.0 - t) / (1.0 + t))
    return tl.where(z < 0, -magnitude, magnitude)


@triton.jit
def _tanh_jet(val, d_s, d_o, s_s):
    """h = tanh(z), g = 1 − h²: h_i = g z_i, h_ii = g z_ii − 2 h g z_i²."""
    h = _tanh(val)
    g = 1.0 - h * h
    s_s = g[None, :, :] * s_s - 2.0 * (h * g)[None, :, :] * d_s * d_s
    return h, g[None, :, :] * d_s, g[None, :, :] * d_o, s_s


@triton.jit
def _dot3(t, w, B: tl.constexpr, WP: tl.constexpr, PRECISION: tl.constexpr):
    """A (G, B, WP) channel group times W (WP, WP): one matrix product over all G·B rows."""
    G: tl.constexpr = t.shape[0]
    flat = tl.reshape(t, (G * B, WP))
    return tl.reshape(tl.dot(flat, w, input_precision=PRECISION), (G, B, WP))


@triton.jit
def _linear_jet(val, d_s, d_o, s_s, w_ptr, b_ptr, cols, B: tl.constexpr, WP: tl.constexpr,
                PRECISION: tl.constexpr):
    """z = h W + b: every channel shares W; only the value gets the bias."""
    w = tl.load(w_ptr + cols[:, None] * WP + cols[None, :])
    bias = tl.load(b_ptr + cols)
    val = tl.dot(val, w, input_precision=PRECISION) + bias[None, :]
    return (val, _dot3(d_s, w, B, WP, PRECISION), _dot3(d_o, w, B, WP, PRECISION),
            _dot3(s_s, w, B, WP, PRECISION))


@triton.jit
def _gate_jet(u_val, u_ds, u_do, u_ss, v_val, v_ds, v_do, v_ss, z_val, z_ds, z_do, z_ss):
    """H = U + Z ⊙ D, D = V − U: H_i = U_i + Z_i D + Z D_i, H_ii = U_ii + Z_ii D + 2 Z_i D_i + Z D_ii."""
    d_val = v_val - u_val
    d_ds = v_ds - u_ds
    d_do = v_do - u_do
    d_ss = v_ss - u_ss
    zv = z_val[None, :, :]
    dv = d_val[None, :, :]
    val = u_val + z_val * d_val
    ds = u_ds + z_ds * dv + zv * d_ds
    do = u_do + z_do * dv + zv * d_do
    ss = u_ss + z_ss * dv + 2.0 * z_ds * d_ds + zv * d_ss
    return val, ds, do, ss


@triton.jit
def _input_tanh_jet(x_ptr, rows, row_mask, w_ptr, b_ptr, dirs_s_ptr, dirs_o_ptr, cols,
                    IN_DIM: tl.constexpr, NSP: tl.constexpr, NOP: tl.constexpr, B: tl.constexpr,
                    WP: tl.constexpr):
    """tanh(x W' + b') with the input normalisation folded into W', b': z_i = W'[i, :], z_ii = 0."""
    val = tl.zeros((B, WP), tl.float32) + tl.load(b_ptr + cols)[None, :]
    for i in tl.static_range(IN_DIM):
        x_i = tl.load(x_ptr + rows * IN_DIM + i, mask=row_mask, other=0.0)
        val += x_i[:, None] * tl.load(w_ptr + i * WP + cols)[None, :]
    dir_s = tl.load(dirs_s_ptr + tl.arange(0, NSP))
    dir_o = tl.load(dirs_o_ptr + tl.arange(0, NOP))
    row_s = tl.load(w_ptr + tl.maximum(dir_s, 0)[:, None] * WP + cols[None, :], mask=(dir_s >= 0)[:, None], other=0.0)
    row_o = tl.load(w_ptr + tl.maximum(dir_o, 0)[:, None] * WP + cols[None, :], mask=(dir_o >= 0)[:, None], other=0.0)
    d_s = tl.zeros((NSP, B, WP), tl.float32) + row_s[:, None, :]
    d_o = tl.zeros((NOP, B, WP), tl.float32) + row_o[:, None, :]
    return _tanh_jet(val, d_s, d_o, tl.zeros((NSP, B, WP), tl.float32))


@triton.jit
def _output_jet(val, d_s, d_o, s_s, w_out_ptr, b_out_ptr, o, cols, WP: tl.constexpr):
    """Output unit ``o`` of the linear output layer: (B,), (NSP, B), (NOP, B), (NSP, B)."""
    w = tl.load(w_out_ptr + o * WP + cols)
    return (tl.sum(val * w[None, :], axis=1) + tl.load(b_out_ptr + o), tl.sum(d_s * w[None, None, :], axis=2),
            tl.sum(d_o * w[None, None, :], axis=2), tl.sum(s_s * w[None, None, :], axis=2))


@triton.jit
def _store_group(out_ptr, channel_map_ptr, values, rows, row_mask, o, N, OUT_DIM: tl.constexpr,
                 G: tl.constexpr):
    """Store a (G, B) channel group of output unit ``o`` at its public channels (map < 0: not asked for)."""
    channel = tl.load(channel_map_ptr + tl.arange(0, G))
    offsets = channel.to(tl.int64)[:, None] * N * OUT_DIM + rows[None, :] * OUT_DIM + o
    tl.store(out_ptr + offsets, values, mask=(channel >= 0)[:, None] & row_mask[None, :])


@triton.jit
def _pick(group, k):
    """Channel ``k`` of a small (G, B) group."""
    return tl.sum(tl.where(tl.arange(0, group.shape[0])[:, None] == k, group, 0.0), axis=0)


@triton.jit
def mlp_jets_kernel(
    x_ptr, w_in_ptr, b_in_ptr, dirs_s_ptr, dirs_o_ptr, w_h_ptr, b_h_ptr, w_out_ptr, b_out_ptr,
    map_s_ptr, map_o_ptr, map_ss_ptr, nu_ptr, out_ptr, N,
    IN_DIM: tl.constexpr, OUT_DIM: tl.constexpr, WP: tl.constexpr, DEPTH: tl.constexpr,
    NSP: tl.constexpr, NOP: tl.constexpr, MODIFIED: tl.constexpr, BURGERS: tl.constexpr,
    B: tl.constexpr, PRECISION: tl.constexpr,
):
    """Jets of a tile of B points through the whole network.

    ``MODIFIED``: the paper's M3 (input layers U, V, H_1 packed in that order, DEPTH gate layers); otherwise the
    plain MLP (one input layer, DEPTH tanh layers). ``BURGERS``: instead of the jets, write (u, v, r_u, r_v) per
    point, with the directions ordered x, y (second) and t (first-only) and ν read from ``nu_ptr``.
    """
    rows = tl.program_id(0).to(tl.int64) * B + tl.arange(0, B)
    row_mask = rows < N
    cols = tl.arange(0, WP)
    LAYER: tl.constexpr = IN_DIM * WP
    FIRST: tl.constexpr = 2 if MODIFIED else 0
    h_val, h_ds, h_do, h_ss = _input_tanh_jet(x_ptr, rows, row_mask, w_in_ptr + FIRST * LAYER,
                                              b_in_ptr + FIRST * WP, dirs_s_ptr, dirs_o_ptr, cols,
                                              IN_DIM, NSP, NOP, B, WP)
    for k in range(DEPTH):
        z_val, z_ds, z_do, z_ss = _linear_jet(h_val, h_ds, h_do, h_ss, w_h_ptr + k * WP * WP, b_h_ptr + k * WP,
                                              cols, B, WP, PRECISION)
        z_val, z_ds, z_do, z_ss = _tanh_jet(z_val, z_ds, z_do, z_ss)
        if MODIFIED:
            u_val, u_ds, u_do, u_ss = _input_tanh_jet(x_ptr, rows, row_mask, w_in_ptr, b_in_ptr, dirs_s_ptr,
                                                      dirs_o_ptr, cols, IN_DIM, NSP, NOP, B, WP)
            v_val, v_ds, v_do, v_ss = _input_tanh_jet(x_ptr, rows, row_mask, w_in_ptr + LAYER, b_in_ptr + WP,
                                                      dirs_s_ptr, dirs_o_ptr, cols, IN_DIM, NSP, NOP, B, WP)
            h_val, h_ds, h_do, h_ss = _gate_jet(u_val, u_ds, u_do, u_ss, v_val, v_ds, v_do, v_ss,
                                                z_val, z_ds, z_do, z_ss)
        else:
            h_val, h_ds, h_do, h_ss = z_val, z_ds, z_do, z_ss
    if BURGERS:
        u, u_s, u_o, u_ss = _output_jet(h_val, h_ds, h_do, h_ss, w_out_ptr, b_out_ptr, 0, cols, WP)
        v, v_s, v_o, v_ss = _output_jet(h_val, h_ds, h_do, h_ss, w_out_ptr, b_out_ptr, 1, cols, WP)
        nu = tl.load(nu_ptr)
        r_u = _pick(u_o, 0) + u * _pick(u_s, 0) + v * _pick(u_s, 1) - nu * tl.sum(u_ss, axis=0)
        r_v = _pick(v_o, 0) + u * _pick(v_s, 0) + v * _pick(v_s, 1) - nu * tl.sum(v_ss, axis=0)
        base = out_ptr + rows * 4
        tl.store(base, u, mask=row_mask)
        tl.store(base + 1, v, mask=row_mask)
        tl.store(base + 2, r_u, mask=row_mask)
        tl.store(base + 3, r_v, mask=row_mask)
    else:
        for o in tl.static_range(OUT_DIM):
            val, o_ds, o_do, o_ss = _output_jet(h_val, h_ds, h_do, h_ss, w_out_ptr, b_out_ptr, o, cols, WP)
            tl.store(out_ptr + rows * OUT_DIM + o, val, mask=row_mask)
            _store_group(out_ptr, map_s_ptr, o_ds, rows, row_mask, o, N, OUT_DIM, NSP)
            _store_group(out_ptr, map_o_ptr, o_do, rows, row_mask, o, N, OUT_DIM, NOP)
            _store_group(out_ptr, map_ss_ptr, o_ss, rows, row_mask, o, N, OUT_DIM, NSP)


# ----------------------------------------------------------------------------------------------- host side
PRECISIONS = ("ieee", "tf32x3", "tf32")
DEFAULT_PRECISION = "tf32x3"  # fp32-level accuracy at tensor-core speed (BASELINES.md); "ieee" for plain fp32
MAX_WIDTH, MAX_IN_DIM, MAX_OUT_DIM = 128, 4, 4
BLOCKS = (16, 32, 64)  # points per program: tl.dot needs at least 16 rows


def launch_key(meta, burgers, precision):
    return (meta["MODIFIED"], burgers, meta["WP"], meta["NSP"], meta["NOP"], meta["IN_DIM"], meta["OUT_DIM"],
            precision)


def launch_config(meta, burgers, precision):
    """(tile, warps) for a configuration, from the table that benchmarks/sm90_static.py --search wrote: the
    measured-best entry, else the table's entry for the same network with the most derivative channels (a
    superset of the work), else 16 points × (8 warps from width 64, else 4)."""
    key = launch_key(meta, burgers, precision)
    if key in LAUNCH_TABLE:
        return LAUNCH_TABLE[key]
    similar = [k for k in LAUNCH_TABLE if (k[0], k[1], k[2], k[7]) == (key[0], key[1], key[2], key[7])
               and k[3] >= key[3] and k[4] >= key[4]]
    if similar:
        return LAUNCH_TABLE[min(similar, key=lambda k: (k[3] + k[4], k))]
    return 16, 8 if meta["WP"] >= 64 else 4


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
    if x.dim() != 2 or x.shape[1] != model.in_dim:
        raise PinnfastError(f"points must have shape (N, {model.in_dim}), got {tuple(x.shape)}")
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


def pack_weights(model, spec, device):
    """Float32 tiles for the kernel: widths padded to WP with zeros, input normalisation folded into W', b'.

    x̃ = x * scale + shift, so x̃ W + b = x (scale ⊙ W) + (b + shift W).
    """
    width, wp = model.width, _pow2(model.width, 16)
    modified = isinstance(model, ModifiedMLP)
    inputs = [model.encoder_u, model.encoder_v, model.input_layer] if modified else [model.input_layer]
    hidden = model.gates if modified else model.hidden
    f32 = dict(dtype=torch.float32, device=device)
    w_in = torch.zeros(len(inputs), model.in_dim, wp, **f32)
    b_in = torch.zeros(len(inputs), wp, **f32)
    for k, layer in enumerate(inputs):
        w_in[k, :, :width] = layer.weight.T * model.in_scale[:, None]
        b_in[k, :width] = layer.bias + model.in_shift @ layer.weight.T
    w_h = torch.zeros(max(1, len(hidden)), wp, wp, **f32)
    b_h = torch.zeros(max(1, len(hidden)), wp, **f32)
    for k, layer in enumerate(hidden):
        w_h[k, :width, :width] = layer.weight.T
        b_h[k, :width] = layer.bias
    w_out = torch.zeros(model.out_dim, wp, **f32)
    w_out[:, :width] = model.output.weight
    # channel groups: second directions (d_s, s_s aligned), then first-only directions (d_o)
    first_only = [i for i in spec.first if i not in spec.second]
    nsp, nop = _pow2(len(spec.second)), _pow2(len(first_only))
    public_first = {i: 1 + k for k, i in enumerate(spec.first)}
    i32 = dict(dtype=torch.int32, device=device)
    return dict(
        tensors=(w_in, b_in, torch.tensor(_padded(spec.second, nsp), **i32),
                 torch.tensor(_padded(first_only, nop), **i32), w_h, b_h, w_out,
                 model.output.bias.detach().float().contiguous(),
                 torch.tensor(_padded([public_first.get(i, -1) for i in spec.second], nsp), **i32),
                 torch.tensor(_padded([public_first[i] for i in first_only], nop), **i32),
                 torch.tensor(_padded([1 + len(spec.first) + k for k in range(len(spec.second))], nsp), **i32)),
        meta=dict(IN_DIM=model.in_dim, OUT_DIM=model.out_dim, WP=wp, DEPTH=len(hidden), NSP=nsp, NOP=nop,
                  MODIFIED=modified),
    )


def launch(model, x, spec, out, nu, burgers, precision, block=None):
    """Run the kernel over every tile of ``x`` into ``out`` (jets layout, or (N, 4) for Burgers); tile and warps
    from the launch table unless ``block`` is given."""
    if block is not None and block not in BLOCKS:
        raise PinnfastError(f"block must be one of {', '.join(map(str, BLOCKS))} points, got {block!r}")
    if x.shape[0] == 0:
        return out
    packed = packed_weights(model, spec, x.device)
    meta = packed["meta"]
    best_block, warps = launch_config(meta, burgers, precision)
    block = block or best_block
    while True:
        try:
            mlp_jets_kernel[(triton.cdiv(x.shape[0], block),)](
                x.contiguous(), *packed["tensors"], nu, out, x.shape[0], **meta, BURGERS=burgers, B=block,
                PRECISION=precision, num_warps=warps)
            return out
        except OutOfResources as exc:  # shared memory grows with tile, width and channels: halve the tile
            if block == BLOCKS[0]:
                raise PinnfastError(f"the triton kernel does not fit this GPU at width {model.width} with "
                                    f"{spec.n_outputs - 1} derivative channels even with {block}-point tiles "
                                    f"({exc}); use fewer channels, a smaller width or backend='torch'") from None
            block //= 2


class TritonJets(torch.autograd.Function):
    """Forward: the fused kernel. Backward: recomputes the jets with the torch path and differentiates that
    (correct, not fused: the fused backward comes later), so the triton backend is differentiable too."""

    @staticmethod
    def forward(ctx, x, model, spec, precision, block, *params):
        ctx.model, ctx.spec = model, spec
        ctx.versions = [p._version for p in params]
        ctx.save_for_backward(x)
        out = torch.empty(spec.n_outputs, x.shape[0], model.out_dim,
                          dtype=torch.float32, device=x.device)
        dummy_nu = out.new_zeros(1)
        return launch(model, x, spec, out, dummy_nu, False, precision, block)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        params = list(ctx.model.parameters())
        if [p._version for p in params] != ctx.versions:
            raise RuntimeError("model parameters were modified in place between the jets and their backward")
        with torch.enable_grad():
            x = x.detach().requires_grad_(ctx.needs_input_grad[0])
            jets = ctx.model.taylor(x, ctx.spec)[ctx.spec.output_channels()]
            inputs = ([x] if ctx.needs_input_grad[0] else []) + params
            grads = list(torch.autograd.grad(jets, inputs, grad_out, allow_unused=True))
        grad_x = grads.pop(0) if ctx.needs_input_grad[0] else None
        return (grad_x, None, None, None, None, *grads)


def triton_jets(model, x, spec, precision=DEFAULT_PRECISION, block=None):
    """``taylor_jets(..., backend="triton")``: jets in the public layout ``(C, N, out_dim)``, float32."""
    check_supported(model, x, precision)
    return TritonJets.apply(x, model, spec, precision, block, *model.parameters())


def burgers_fields(model, x, nu, precision=DEFAULT_PRECISION, block=None, out=None):
    """Fused Burgers: ``(N, 4)`` = (u, v, r_u, r_v) for points (x, y, t), in one launch, without autograd."""
    from pinnfast.burgers import FIRST, SECOND
    from pinnfast.jets import JetSpec

    check_supported(model, x, precision)
    if model.in_dim != 3 or model.out_dim != 2:
        raise PinnfastError(f"Burgers needs a model (x, y, t) -> (u, v); got in_dim {model.in_dim}, "
                            f"out_dim {model.out_dim}")
    nu = torch.as_tensor(nu, dtype=torch.float32, device=x.device).detach().reshape(1)
    if out is None:
        out = torch.empty(x.shape[0], 4, dtype=torch.float32, device=x.device)
    elif (out.shape != (x.shape[0], 4) or out.dtype != torch.float32 or out.device != x.device
          or not out.is_contiguous()):
        raise PinnfastError(f"out must be a contiguous float32 tensor of shape ({x.shape[0]}, 4) on {x.device}; got "
                            f"{'a non-contiguous ' if not out.is_contiguous() else ''}{out.dtype} "
                            f"{tuple(out.shape)} on {out.device}")
    return launch(model, x, JetSpec(FIRST, SECOND), out, nu, True, precision, block)
