"""The training step as CUDA graphs: one graph per kind of step (an annealing step, a plain step), captured at its
first use and then replayed, so that a step costs one graph launch instead of hundreds of kernel launches. At the
main job's size a step is launch-bound (8 ms of wall time for 1.7 ms of kernels on an H200: BENCHMARKS.md).

What is captured is the trainer's own step function: sampling, losses, gradients, the annealing statistics and λ,
Adam and the learning rate, all on the device. The trainer meets the graphs' conditions in this mode: Adam
``capturable`` with learning rates that are device tensors, set from a device step count; no host
synchronisation inside the step; one random generator, registered with every graph, whose offset each replay
advances exactly as the eager step would.
"""
import contextlib

import torch

WARMUP_CALLS = 2  # eager calls of a kind before its capture: Triton compiles, cuBLAS plans, the optimiser's state


class StepGraphs:
    """``step(annealing)`` → a tuple of tensors, replayed as a CUDA graph per value of ``annealing``.

    Before a capture the step runs ``WARMUP_CALLS`` times eagerly on a side stream, then everything those calls
    changed is put back (every tensor ``state()`` lists, the generator's state), so that capturing does not move
    the run: tensors that the warm-up created (the optimiser's state of a parameter that had none, e.g. ν's after
    its hold) are zeroed, which is a fresh Adam state. ``after_replay()`` runs after every replay and warm-up, for
    host-side caches that key on parameter versions, which a replay does not change."""

    def __init__(self, step, state, generator, after_replay):
        self.step, self.state, self.generator, self.after_replay = step, state, generator, after_replay
        self.graphs = {}  # annealing → (graph, its static outputs)

    def __call__(self, annealing):
        if annealing not in self.graphs:
            self.graphs[annealing] = self._capture(annealing)
        graph, outputs = self.graphs[annealing]
        graph.replay()
        self.after_replay()
        return tuple(output.clone() for output in outputs)  # the static outputs are overwritten by the next replay

    def _capture(self, annealing):
        self.warm_up(annealing)
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(self.generator)
        with torch.cuda.graph(graph):
            outputs = self.step(annealing)
        return graph, outputs

    def warm_up(self, annealing):
        """``WARMUP_CALLS`` eager calls of the step (on a side stream on a GPU), then everything they changed put
        back: afterwards the run is where it was."""
        before = self.state()
        saved = [tensor.detach().clone() for tensor in before]
        random_state = self.generator.get_state()
        with _side_stream(self.generator.device):
            for _ in range(WARMUP_CALLS):
                self.step(annealing)
        known = {id(tensor) for tensor in before}
        with torch.no_grad():
            for tensor, value in zip(before, saved):
                tensor.copy_(value)
            for tensor in self.state():
                if id(tensor) not in known:
                    tensor.zero_()
        self.generator.set_state(random_state)
        self.after_replay()


@contextlib.contextmanager
def _side_stream(device):
    """A CUDA side stream that waits for, and is then waited for by, the current one (as a capture wants its
    warm-up); elsewhere nothing."""
    if device.type != "cuda":
        yield
        return
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        yield
    torch.cuda.current_stream(device).wait_stream(side)
