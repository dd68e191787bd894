"""export/conv_rewrite.py: the blocked form of wide few-input convolutions, and the ONNX pass."""
import numpy as np
import pytest
import torch
from torch import nn

from export.conv_rewrite import BlockedConv, block_wide_convs, depth_to_space_dcr, rewritable
from mobile_kernelnet.models import create_model


@pytest.mark.parametrize("cin,cout,k,shape", [(2, 24, 9, (64, 48)), (1, 3, 7, (10, 12)), (4, 5, 11, (22, 30))])
def test_blocked_conv_is_the_same_map(cin, cout, k, shape):
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, k, padding=k // 2)
    x = torch.randn(2, cin, *shape)
    blocked = BlockedConv(conv)
    assert blocked.phases.in_channels == 4 * cin and blocked.phases.out_channels == 4 * cout
    torch.testing.assert_close(blocked(x), conv(x), atol=2e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="even"):
        blocked(torch.randn(1, cin, shape[0] + 1, shape[1]))


def test_only_wide_stride_one_few_input_convolutions_are_rewritable():
    assert rewritable(nn.Conv2d(2, 24, 9, padding=4))
    assert not rewritable(nn.Conv2d(2, 24, 3, padding=1))             # narrow
    assert not rewritable(nn.Conv2d(24, 24, 9, padding=4))            # many inputs: already a good GEMM
    assert not rewritable(nn.Conv2d(2, 24, 9, stride=2, padding=4))
    assert not rewritable(nn.Conv2d(2, 24, 9, padding=3))             # not 'same'
    assert not rewritable(nn.Conv2d(2, 24, 9, padding=4, padding_mode="reflect"))
    with pytest.raises(ValueError):
        BlockedConv(nn.Conv2d(2, 24, 3, padding=1))


def test_the_shipped_kernelnet_entry_is_rewritten_and_its_kernels_do_not_change():
    net = create_model("kernelnet", 2, "mobile")
    lr = torch.rand(1, 1, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = net.stages(lr)
        assert block_wide_convs(net, 97) == []  # an odd side: left alone
        assert block_wide_convs(net, 96) == ["gradient.convs.0"]
        after = net.stages(lr)
    assert isinstance(net.gradient.convs[0], BlockedConv)
    for name in before:
        torch.testing.assert_close(after[name], before[name], atol=1e-5, rtol=1e-4)


def test_depth_to_space_pass_keeps_the_outputs_and_makes_it_dcr():
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((12, 2, 3, 3)).astype(np.float32)   # 3 channels x 2x2 phases
    bias = rng.standard_normal(12).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1]),
         helper.make_node("DepthToSpace", ["y"], ["z"], blocksize=2, mode="CRD")],
        "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 5, 6])],
        [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [1, 3, 10, 12])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    x = rng.random((1, 2, 5, 6), dtype=np.float32)

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    reference = run(model)
    assert depth_to_space_dcr(model) == 1 and depth_to_space_dcr(model) == 0  # done once
    assert next(a.s for a in model.graph.node[1].attribute if a.name == "mode") == b"DCR"
    np.testing.assert_allclose(run(model), reference, atol=1e-6)
