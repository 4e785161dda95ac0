"""The training step: the parameters, Adam with its exponential learning-rate decay, the loss weights (fixed, or
annealed for M2 and M4), the run's random stream, the losses (through ``torch.compile`` when asked), the CUDA
graphs that replay the step, and the L-BFGS finish; with :meth:`TrainingStep.state_dict` for checkpoints.

Each step draws a fresh batch from one seeded generator, so that a run resumed from a checkpoint repeats the
uninterrupted run exactly; under torchrun each rank draws from its own stream and gradients are averaged over the
ranks (:mod:`pinnfast.distributed`).
"""
import math
import time
import warnings

import torch

from .annealing import Annealing, FixedWeights
from .config import MODELS
from .errors import PinnfastError, PinnfastWarning, TrainingDiverged
from .graphs import StepGraphs

COMPILER = "inductor"  # torch.compile's backend for compile=True: fused C++ (CPU) or Triton (GPU) kernels
LBFGS_COLLOCATION = 4  # the L-BFGS batch: this many times n_collocation points, fixed


class TrainingStep:
    """One optimiser step of ``problem`` after another (``step`` counts them), with what they read and change."""

    def __init__(self, problem, config, device, ranks):
        self.problem, self.config, self.device, self.ranks = problem, config, device, ranks
        self.losses = None if config.compile else problem.losses  # compiled at the first step
        self.named_params = list(problem.network.named_parameters())
        self.physical = problem.physical()
        self.params = [p for _, p in self.named_params] + self.physical
        groups = [{"params": [p for _, p in self.named_params], "lr": config.lr}]
        groups += [dict(group, betas=(0.9, config.nu_beta2)) for group in problem.physical_groups(config.nu_lr)]
        # A new run on the CPU: fused=True, one pass over every tensor, 0.13 ms per update of the default network
        # against 0.48 for foreach (one operation per kind over every tensor). torch 2.13's fused CPU Adam reads a
        # gradient as if it were contiguous, so an annealing step hands it contiguous ones (autograd.grad gives
        # transposed views for some weights). On a GPU foreach, as the GPU runs measured it (capturable for the
        # CUDA graphs). A resumed run keeps the setting its checkpoint's optimiser state was saved with.
        fused = device.type == "cpu"
        self.optimizer = torch.optim.Adam(groups, foreach=not fused, fused=fused, capturable=config.cuda_graphs)
        self.gamma = config.decay_rate ** (1.0 / config.decay_steps)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, self.gamma)  # eager runs
        n_terms = len(problem.term_names)
        self.log_imbalance = MODELS[config.model][1]  # the metrics' imbalance ratios (off for runs begun without)
        if self.log_imbalance:
            self.weights = Annealing(n_terms, device, config.anneal_period, config.anneal_alpha, config.anneal_grads,
                                     config.anneal_mean, config.anneal_weighted, members=config.members)
            self.selected = self.weights.selected(self.named_params)
        else:
            self.weights = FixedWeights(n_terms, device, members=config.members)
        self.generator = torch.Generator(device).manual_seed(ranks.seed(config.seed))
        self.step, self.lbfgs_done = 0, False
        self.compile_seconds = 0.0  # torch.compile's first call (every compile of a resumed run)
        self.graphs = self._graphs() if config.cuda_graphs else None

    def __call__(self):
        """One optimiser step; returns the step's metrics (device tensor, no host sync) and the learning rate (a
        float; a device tensor with ``cuda_graphs``)."""
        annealing, holding = self.weights.due(self.step), self.step < self.config.nu_warmup
        replay = self.graphs is not None and not holding
        metrics = self.graphs(annealing) if replay else self._step(annealing, holding)
        self.step += 1
        return metrics

    def state_dict(self):
        """The checkpoint's entries for the step (the problem's own state aside), with every rank's random stream
        (``generators``, in rank order: a collective)."""
        return {"step": self.step, "compile_seconds": self.compile_seconds, "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "weights": self.weights.state_dict(),
                "generators": self.ranks.gather(self.generator.get_state()), "lbfgs_done": self.lbfgs_done}

    def load_state_dict(self, state):
        """Continue from :meth:`state_dict`'s entries, this rank's random stream."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.weights.load_state_dict(state["weights"])
        self.generator.set_state(state["generators"][self.ranks.rank])
        self.step, self.compile_seconds = state["step"], state["compile_seconds"]
        if self.config.cuda_graphs:
            self._device_learning_rates()
        self.lbfgs_done = state["lbfgs_done"]

    def compile(self):
        """Compile the losses now, unless done (or not asked for)."""
        if self.losses is None:
            self.losses = self._compiled_losses()

    def _step(self, annealing, holding=False):
        """The step's work, all of it on the device (what the CUDA graphs capture, after the hold): an annealing step
        or a plain one; ``holding``: the physical parameters wait (ν's warm-up)."""
        self.compile()
        loss_r, terms = self.losses(self.problem.sample(self.generator))
        terms = torch.stack(terms)  # (terms,), or (terms, members) for an ensemble
        lam = self.weights.lambdas
        imbalance = torch.full_like(lam, math.nan)  # known at annealing steps only
        if annealing:
            imbalance = self._annealed_gradients(loss_r, terms)
        else:
            (loss_r.sum() + (lam * terms).sum()).backward()  # members are independent: one backward for all
            self.ranks.average([p.grad for p in self.params])
        if holding:
            for p in self.physical:
                p.grad = None  # physical parameters wait until the network has roughly fitted the data
        lr = self._learning_rate()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._advance_learning_rate()
        loss = loss_r.detach() + (lam * terms.detach()).sum(0)
        losses = torch.cat([torch.stack([loss, loss_r.detach()]), terms.detach(), lam.clone(),
                            *([imbalance] if self.log_imbalance else [])])
        if self.config.members is not None:
            losses = losses.mean(-1)  # the members' mean; each member's ν is logged apart
        logged = [value.reshape(1) for value in self.problem.logged().values()]
        return torch.cat([losses, *logged]), lr

    def _learning_rate(self):
        """This step's learning rate of the network: the scheduler's; with ``cuda_graphs`` every group's is set on
        the device to its base × γ^step (γ = decay_rate^(1/decay_steps)) from the device's step count, and the
        network's is returned in float64, as the metrics log it."""
        if not self.config.cuda_graphs:
            return self.scheduler.get_last_lr()[0]
        decay = torch.pow(self.gamma, self.steps_done)
        rates = [decay * base for base in self.scheduler.base_lrs]
        for group, rate in zip(self.optimizer.param_groups, rates):
            group["lr"].copy_(rate)
        return rates[0]

    def _advance_learning_rate(self):
        if not self.config.cuda_graphs:
            self.scheduler.step()
        else:
            self.steps_done += 1

    def _graphs(self):
        """Graph mode: the learning rates as device tensors and the step count they follow, and the graphs."""
        if self.device.type != "cuda":
            raise PinnfastError(f"--cuda-graphs needs a CUDA GPU; this run is on {self.device.type}")
        if self.ranks.world > 1:
            raise PinnfastError("--cuda-graphs runs in one process; leave out --nproc (torchrun)")
        if self.problem.backend != "triton":  # the torch path indexes with host lists: copies a capture cannot hold
            raise PinnfastError("--cuda-graphs replays the fused kernels' step: it needs the triton backend (the "
                                "default on a GPU for float32 networks of width <= 128), not torch")
        self._device_learning_rates()
        return StepGraphs(self._step, self._mutable_tensors, self.generator, self._forget_packed_weights)

    def _device_learning_rates(self):
        """Each group's learning rate as a device tensor (what capturable Adam reads inside a graph), and the device
        step count they are set from; again after a resume, whose optimiser state comes from the host."""
        self.steps_done = torch.tensor(float(self.step), dtype=torch.float64, device=self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = torch.zeros((), dtype=torch.float32, device=self.device)

    def _mutable_tensors(self):
        """Every tensor a step changes: the parameters, λ, the learning rates and their step count, Adam's state."""
        optimizer_state = [value for state in self.optimizer.state.values() for value in state.values()
                           if torch.is_tensor(value)]
        return [*self.params, self.weights.lambdas, self.steps_done,
                *(group["lr"] for group in self.optimizer.param_groups), *optimizer_state]

    def _forget_packed_weights(self):
        """After a graph replay: the fused kernels' cached packed weights are stale (a replay updates the
        parameters without changing their versions; graph mode runs on the triton backend)."""
        from .kernels import forget_packed_weights

        forget_packed_weights(self.problem.network)

    def _compiled_losses(self):
        """``problem.losses`` through ``torch.compile``, compiled here on one batch (forward and backward: where the
        compiler does its work) drawn without advancing the run's random stream, timed in ``compile_seconds``
        (unless it fails); on any failure of the compiler (no C++ compiler, an operation it cannot lower) the
        uncompiled losses, with a warning."""
        state, donating = self.generator.get_state(), torch._functorch.config.donated_buffer
        started = time.perf_counter()
        try:
            # An annealing step runs several reverse passes through one graph (retain_graph), which torch forbids
            # for backward graphs that reuse ("donate") their saved buffers; it checks the setting at every backward
            # pass, so it is off for the process (it saves memory only; the numbers are the same).
            torch._functorch.config.donated_buffer = False
            compiled = torch.compile(self.problem.losses, backend=COMPILER, dynamic=False)
            loss_r, terms = compiled(self.problem.sample(self.generator))
            torch.autograd.grad(loss_r.sum() + sum(term.sum() for term in terms), self.params, allow_unused=True)
        except Exception as failure:  # the compiler's failures come as many exception types
            torch._functorch.config.donated_buffer = donating
            self.config.compile = False  # what the run does, as its checkpoints and result.json say
            warnings.warn(f"torch.compile failed ({type(failure).__name__}: {str(failure).strip()[:200]}); "
                          "training uncompiled (--no-compile skips the attempt)", PinnfastWarning, stacklevel=2)
            return self.problem.losses
        finally:
            self.generator.set_state(state)
        self.compile_seconds += time.perf_counter() - started
        return compiled

    def _annealed_gradients(self, loss_r, terms):
        """∇L_r and each ∇L_i by separate reverse passes: they feed Algorithm 1 and then form
        ∇L = ∇L_r + Σ λ_i ∇L_i without a further pass. With several ranks both are averaged over the ranks first,
        so that λ is that of the union of their batches, the same on every rank. Returns the imbalance ratio of
        Algorithm 1."""
        params = self.params
        grad_r = _grads(loss_r.sum(), params, retain_graph=True)
        grad_terms = [_grads(term.sum(), params, retain_graph=k + 1 < len(terms)) for k, term in enumerate(terms)]
        self.ranks.average([*grad_r, *(g for grads in grad_terms for g in grads)])
        imbalance = self.weights.update([grad_r[k] for k in self.selected],
                                        [[grads[k] for k in self.selected] for grads in grad_terms])
        lam = self.weights.lambdas
        contiguous = self.optimizer.defaults["fused"]  # the layout fused Adam reads
        for k, p in enumerate(params):
            grad = grad_r[k] + sum(_per_member(lam[i], grads[k]) * grads[k] for i, grads in enumerate(grad_terms))
            p.grad = grad.contiguous() if contiguous else grad
        return imbalance

    def lbfgs_finish(self, kept):
        """Up to ``lbfgs_steps`` iterations of L-BFGS (strong Wolfe line search; it also ends when the loss stops
        changing) after the Adam steps, on one fixed batch (``LBFGS_COLLOCATION`` × ``n_collocation`` points drawn
        from the run's stream, every observation) with λ as Adam left it, as DeepXDE and the original PINN papers
        finish; torch ops. Deterministic from the checkpoint, so a run cut during this phase redoes it on resume.
        Returns each loss evaluation's row (evaluation, loss, every logged unknown); a non-finite loss stops with
        the message that the checkpoint ``kept`` (its path) stays."""
        if self.ranks.world > 1:
            raise PinnfastError("--lbfgs-steps runs in one process; leave out --nproc")
        batch = self.problem.sample(self.generator, LBFGS_COLLOCATION * self.config.n_collocation, every_point=True)
        lam = self.weights.lambdas.detach().clone()
        backend, self.problem.backend = self.problem.backend, "torch"
        optimizer = torch.optim.LBFGS(self.params, max_iter=self.config.lbfgs_steps, history_size=50,
                                      line_search_fn="strong_wolfe")
        rows = []

        def closure():
            optimizer.zero_grad(set_to_none=True)
            loss_r, terms = self.problem.losses(batch)
            loss = loss_r.sum() + (lam * torch.stack(terms)).sum()  # as a step: members are independent
            loss.backward()
            rows.append([len(rows) + 1, loss.item(), *(v.mean().item() for v in self.problem.logged().values())])
            return loss

        optimizer.step(closure)
        self.problem.backend = backend
        if not all(math.isfinite(value) for value in rows[-1][1:]):
            raise TrainingDiverged(f"L-BFGS reached a non-finite loss; the Adam run's checkpoint (step {self.step}) "
                                   f"is kept in {kept}")
        self.lbfgs_done = True
        return rows


def _per_member(value, like):
    """A per-member value ``(K,)`` shaped to scale a member-stacked tensor ``(K, ...)``; a scalar as it is."""
    return value if value.dim() == 0 else value.reshape(-1, *[1] * (like.dim() - 1))


def _grads(loss, params, retain_graph=False):
    grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
