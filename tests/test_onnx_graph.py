"""ONNX files from anywhere as models (cnnlab.external.onnx_graph): graphs exported by plain `torch.onnx.export`
from networks written as learners write them (both exporters), graphs built by hand in old opsets and in the
shapes other frameworks export, the onnxruntime-backed fallback, and every bad file refused in one line."""

import contextlib
import copy
import hashlib
import io
import logging
import warnings

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from cnnlab import CnnlabError
from cnnlab.external import onnx_ops
from cnnlab.external.onnx_graph import OnnxRuntimeModel, graph_parameters, graph_summary, load_onnx
from cnnlab.models.lecture import InceptionNet
from cnnlab.models.registry import create_model
from cnnlab.models.stats import count_flops, count_parameters
from learners import LectureNet

# --- networks as learners write them --------------------------------------------------------------------------


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + x)


class ResidualNet(nn.Module):
    """BatchNorm and a residual add, global average pooling, dropout."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.block = Block(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = self.pool(self.block(x))
        return self.fc(self.drop(torch.flatten(x, 1)))


class RGBNet(nn.Module):
    """3x32x32 input; LeakyReLU, a ceil-mode pool, a strided conv, GELU, an average pool, softmax at the end."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.LeakyReLU(0.1),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.GELU(),
            nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Dropout(), nn.Linear(32 * 4 * 4, 64), nn.Sigmoid(), nn.Linear(64, 10))

    def forward(self, x):
        x = self.features(x)
        x = x.view(x.size(0), -1)
        return F.softmax(self.classifier(x), dim=1)


def sequential():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 10),
    )  # fmt: skip


class TinyViT(nn.Module):
    """A vision transformer as tutorials write one for MNIST: patches by a strided conv, a class token expanded
    to the batch, position embeddings, one encoder layer, the class token's output classified."""

    def __init__(self, patch=7, dim=16):
        super().__init__()
        self.patch_embed = nn.Conv2d(1, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, (28 // patch) ** 2 + 1, dim))
        layer = nn.TransformerEncoderLayer(dim, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        return self.head(self.norm(self.encoder(x)[:, 0]))


class UpNet(nn.Module):
    """Up and down again: a transposed convolution, nearest and bilinear interpolation."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 7 * 7, 10)

    def forward(self, x):
        a = F.relu(self.down(x))  # (N, 4, 14, 14)
        b = torch.cat([F.interpolate(a, scale_factor=2, mode="nearest"), self.up(a)], 1)  # (N, 8, 28, 28)
        b = F.interpolate(b, size=(14, 14), mode="bilinear", align_corners=False)
        return self.fc(F.max_pool2d(F.relu(self.conv(b)), 2).flatten(1))


def randomise(model, seed=2):
    """Every parameter drawn at random: an untrained net's equal tensors (LayerNorm's ones) would be merged by
    the exporter into one initializer."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model


def randomise_batchnorm(model):
    """Statistics away from 0 and 1, so that a wrong epsilon, scale or order shows."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                for tensor, low, high in ((module.running_mean, -1, 1), (module.running_var, 0.5, 2)):
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
                module.weight.uniform_(0.5, 2, generator=generator)
                module.bias.uniform_(-1, 1, generator=generator)
    return model


def export(model, path, shape, dynamo: bool, opset=None, batch=2, dynamic=True, **options):
    """Plain torch.onnx.export, as a learner calls it (the exporters' chatter silenced)."""
    model = model.eval()
    example = (torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0)),)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            dims = ({0: torch.export.Dim("batch")},) if dynamic else None
            torch.onnx.export(model, example, path, dynamo=True, opset_version=opset, dynamic_shapes=dims, **options)
        else:
            axes = {"input": {0: "n"}, "output": {0: "n"}} if dynamic else None
            torch.onnx.export(
                model, example, path, dynamo=False, opset_version=opset, input_names=["input"],
                output_names=["output"], dynamic_axes=axes, **options,
            )  # fmt: skip
    return path


def images(n, shape=(1, 28, 28), seed=5):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


def assert_same(model, reference, shape=(1, 28, 28), n=5, tolerance=1e-5):
    x = images(n, shape)
    with torch.no_grad():
        expected, actual = reference(x), model(x)
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max().item() <= tolerance


def ort_scores(path_or_bytes, x: np.ndarray) -> np.ndarray:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def lecture():
    return LectureNet().eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, lecture):
    """The lecture CNN through both exporters, the Inception net through the older one (the dynamo exporter takes
    seconds per model: the slow part of this file, done once)."""
    folder = tmp_path_factory.mktemp("exported")
    inception = InceptionNet().eval()
    return {
        "cnn-dynamo": export(lecture, folder / "cnn-dynamo.onnx", (1, 28, 28), dynamo=True),
        "cnn-legacy": export(lecture, folder / "cnn-legacy.onnx", (1, 28, 28), dynamo=False, opset=13),
        "cnn-legacy-7": export(lecture, folder / "cnn-legacy-7.onnx", (1, 28, 28), dynamo=False, opset=7),
        "cnn-fixed-1": export(lecture, folder / "cnn-fixed.onnx", (1, 28, 28), dynamo=False, batch=1, dynamic=False),
        "inception-legacy": export(inception, folder / "inception-legacy.onnx", (1, 28, 28), dynamo=False, opset=9),
        "inception": inception,
    }


# --- learners' networks through torch.onnx.export ----------------------------------------------------------------


@pytest.mark.parametrize("key", ["cnn-dynamo", "cnn-legacy", "cnn-legacy-7", "cnn-fixed-1"])
def test_lecture_cnn_becomes_the_same_layers(exported, lecture, key):
    model = load_onnx(exported[key])
    assert isinstance(model, fx.GraphModule) and model.unsupported == [] and model.note == ""
    assert model.parity is not None and model.parity < 1e-5
    assert (model.input_shape, model.num_classes, model.input_layout) == ((1, 28, 28), 10, "NCHW")
    assert count_parameters(model) == 8490
    assert isinstance(model.conv1, nn.Conv2d) and isinstance(model.conv2, nn.Conv2d) and isinstance(model.fc, nn.Linear)
    for name in ("conv1", "conv2", "fc"):  # the inspector's multiply-add reads these weights
        assert torch.equal(getattr(model, name).weight, getattr(lecture, name).weight)
        assert torch.equal(getattr(model, name).bias, getattr(lecture, name).bias)
    assert_same(model, lecture)  # a batch of 5, whatever batch the graph was exported with
    code = model.code
    assert "torch.flatten" in code and "log_softmax" in code and "torch.relu" in code  # x.view(in_size, -1) folded


def test_inception_concatenates_the_same_branches(exported):
    model = load_onnx(exported["inception-legacy"])
    assert isinstance(model, fx.GraphModule) and count_parameters(model) == 97298
    inception = exported["inception"]
    assert torch.equal(model.get_submodule("incept1.branch5x5_2").weight, inception.incept1.branch5x5_2.weight)
    assert "torch.cat" in model.code
    assert_same(model, inception)


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_sequential_residual_and_rgb_nets(tmp_path, dynamo):
    nets = [("seq", sequential(), (1, 28, 28)), ("res", randomise_batchnorm(ResidualNet()), (1, 28, 28))]
    nets.append(("rgb", RGBNet(), (3, 32, 32)))
    for name, net, shape in nets:
        if dynamo and name != "rgb":
            continue  # one dynamo export here: they take seconds each
        model = load_onnx(export(net, tmp_path / f"{name}.onnx", shape, dynamo=dynamo, opset=None if dynamo else 11))
        assert isinstance(model, fx.GraphModule), model.note
        assert model.input_shape == shape
        assert_same(model, net.eval(), shape)
        if name == "seq":
            assert count_parameters(model) == count_parameters(net) == 34622


def test_batchnorm_kept_by_the_exporter_becomes_batchnorm2d(tmp_path):
    """Exporters fold an eval-mode BatchNorm into the convolution before it (then the parameters are fewer);
    exported without folding, it comes back as nn.BatchNorm2d with the same statistics and parameter count."""
    net = randomise_batchnorm(ResidualNet()).eval()
    path = export(net, tmp_path / "bn.onnx", (1, 28, 28), dynamo=False, opset=11, do_constant_folding=False,
                  training=torch.onnx.TrainingMode.PRESERVE)  # fmt: skip
    model = load_onnx(path)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 3 and count_parameters(model) == count_parameters(net)
    assert torch.equal(model.get_submodule("block.bn2").running_var, net.block.bn2.running_var)
    assert_same(model, net)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
def test_every_view_works_on_the_rebuilt_model(exported, lecture):
    model = load_onnx(exported["cnn-dynamo"])
    assert count_flops(model, (1, 28, 28)) == count_flops(lecture, (1, 28, 28))
    traced = fx.symbolic_trace(model)  # what fx-based stages do
    assert_same(traced, lecture)
    x = images(3)
    with torch.no_grad():
        assert torch.allclose(torch.jit.trace(model, x)(x), lecture(x), atol=1e-6)
    model.train()
    F.nll_loss(model(x), torch.tensor([1, 2, 3])).backward()  # it trains: every parameter gets a gradient
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    twin = copy.deepcopy(model)
    assert (twin.input_shape, twin.num_classes, twin.source_sha256) == (
        model.input_shape,
        model.num_classes,
        model.source_sha256,
    )


def test_metadata_and_external_weights(exported, tmp_path):
    """torch.onnx.export(dynamo=True) keeps large weights in model.onnx.data beside the file: both are read,
    and `onnx_bytes` is one self-contained file."""
    path = exported["cnn-dynamo"]
    assert path.with_name(path.name + ".data").is_file()
    model = load_onnx(path)
    assert model.source_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert model.opset >= 18
    alone = tmp_path / "copied.onnx"
    alone.write_bytes(model.onnx_bytes)
    assert_same(load_onnx(alone), model)
    moved = tmp_path / "moved" / path.name
    moved.parent.mkdir()
    moved.write_bytes(path.read_bytes())
    with pytest.raises(CnnlabError, match="which is missing"):
        load_onnx(moved)


@pytest.mark.parametrize("opset", [14, 17])
def test_vision_transformer_with_a_class_token(tmp_path, opset):
    """Before opset 17 LayerNorm exports as its arithmetic, from 17 as LayerNormalization; the class token's
    Expand to the batch is rebuilt from the batch size at run time."""
    net = randomise(TinyViT()).eval()
    model = load_onnx(export(net, tmp_path / "vit.onnx", (1, 28, 28), dynamo=False, opset=opset))
    assert isinstance(model, fx.GraphModule), model.note
    assert count_parameters(model) == count_parameters(net)
    assert isinstance(model.cls_token, nn.Parameter) and torch.equal(model.cls_token, net.cls_token)
    assert_same(model, net)


def test_locally_connected_net_unfold_and_einsum(tmp_path):
    """`lcn` (F.unfold, which exports to Gathers of index grids, and einsum) at 16x16, to stay fast."""
    torch.manual_seed(0)
    net = create_model("lcn", input_size=(16, 16)).eval()
    model = load_onnx(export(net, tmp_path / "lcn.onnx", (1, 16, 16), dynamo=False, opset=13))
    assert isinstance(model, fx.GraphModule), model.note
    assert "einsum" in model.code and count_parameters(model) == count_parameters(net)
    assert_same(model, net, (1, 16, 16))


def test_upsampling_and_transposed_convolution(tmp_path):
    net = UpNet().eval()
    model = load_onnx(export(net, tmp_path / "up.onnx", (1, 28, 28), dynamo=False, opset=11))
    assert isinstance(model, fx.GraphModule), model.note
    assert isinstance(model.up, nn.ConvTranspose2d) and torch.equal(model.up.weight, net.up.weight)
    assert model.code.count("interpolate") == 2
    assert_same(model, net)


def test_a_rebuilt_graph_that_disagrees_runs_through_onnxruntime(exported, lecture, monkeypatch):
    """The safety net: were a conversion wrong (here Relu made tanh on purpose), the parity check on load
    catches it and the model runs through onnxruntime instead."""
    monkeypatch.setitem(onnx_ops._UNARY, "Relu", torch.tanh)
    model = load_onnx(exported["cnn-legacy"])
    assert isinstance(model, OnnxRuntimeModel) and model.unsupported == []
    assert "the rebuilt graph differs from it by" in model.note
    assert_same(model, lecture)


# --- graphs built by hand: old opsets, other frameworks -----------------------------------------------------------


def make_model(nodes, inputs, output, initializers, opset, weights_as_inputs=False):
    graph = helper.make_graph(nodes, "g", inputs, [output], [numpy_helper.from_array(a, n) for n, a in initializers])
    if weights_as_inputs:  # as exporters did before IR 4
        graph.input.extend(
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in initializers
        )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 3 if opset < 8 else 7
    onnx.checker.check_model(model)
    return model


def value(name, *dims, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, list(dims))


def weights(seed=0, **shapes):
    generator = np.random.default_rng(seed)
    return [(n, generator.normal(0, 0.5, s).astype(np.float32)) for n, s in shapes.items()]


def old_opset_graph(opset: int):
    """A small CNN in the forms of `opset`: attributes that later opsets moved to inputs (Clip, Pad, Unsqueeze,
    Squeeze, Dropout), BatchNormalization's `spatial`, the Softmax that flattens from its axis before 13, the
    Shape-Gather-Unsqueeze-Concat-Reshape chain of x.view(n, -1), Gemm's transB, alpha and beta.
    Slice and Split: attributes before 10 and 13, inputs after.
    Shapes: 1x10x10 -> conv 4x10x10 -> pad 4x12x12 -> pool 4x6x6 (144), sliced from 4 on (140) + global max
    (4) -> 144, split [100, 44] and put back swapped -> 10."""
    w = weights(conv_w=(4, 1, 3, 3), conv_b=(4,), scale=(4,), shift=(4,), mean=(4,), fc_w=(10, 144), fc_b=(10,))
    w.append(("var", np.linspace(0.5, 2, 4).astype(np.float32)))
    ints = lambda name, values: (name, np.array(values, dtype=np.int64))
    consts = [ints("zero", 0), ints("minus_one", [-1])]
    nodes = [
        helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization",
            ["c", "scale", "shift", "mean", "var"],
            ["bn"],
            epsilon=1e-3,
            **({"spatial": 1} if opset < 9 else {}),
        ),  # fmt: skip
    ]
    if opset < 11:
        nodes.append(helper.make_node("Clip", ["bn"], ["clip"], min=0.0, max=6.0))
        nodes.append(helper.make_node("Pad", ["clip"], ["pad"], pads=[0, 0, 1, 1, 0, 0, 1, 1], value=0.5))
    else:
        consts += [("lo", np.array(0.0, np.float32)), ("hi", np.array(6.0, np.float32))]
        consts += [ints("pads", [0, 0, 1, 1, 0, 0, 1, 1]), ("pad_value", np.array(0.5, np.float32))]
        nodes.append(helper.make_node("Clip", ["bn", "lo", "hi"], ["clip"]))
        nodes.append(helper.make_node("Pad", ["clip", "pads", "pad_value"], ["pad"]))
    nodes += [
        helper.make_node("AveragePool", ["pad"], ["pool"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Softmax", ["pool"], ["soft"], axis=1),  # over C*H*W before opset 13, over C from 13
        helper.make_node("Shape", ["soft"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("GlobalMaxPool", ["pool"], ["gmp"]),
    ]
    if opset < 13:
        unsqueeze = helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0])
        squeeze = helper.make_node("Squeeze", ["gmp"], ["squeezed"], axes=[2, 3])
        split = helper.make_node("Split", ["both"], ["front", "back"], axis=1, split=[100, 44])
    else:
        consts += [ints("axis0", [0]), ints("axes23", [2, 3]), ints("split", [100, 44])]
        unsqueeze = helper.make_node("Unsqueeze", ["n", "axis0"], ["n1"])
        squeeze = helper.make_node("Squeeze", ["gmp", "axes23"], ["squeezed"])
        split = helper.make_node("Split", ["both", "split"], ["front", "back"], axis=1)
    if opset < 10:
        slice_ = helper.make_node("Slice", ["flat"], ["sliced"], starts=[4], ends=[2**62], axes=[1])
    else:
        consts += [ints("starts", [4]), ints("ends", [2**62]), ints("slice_axes", [1])]
        slice_ = helper.make_node("Slice", ["flat", "starts", "ends", "slice_axes"], ["sliced"])
    nodes += [
        unsqueeze,
        squeeze,
        helper.make_node("Concat", ["n1", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["soft", "target"], ["flat"]),
        slice_,
        helper.make_node("Concat", ["sliced", "squeezed"], ["both"], axis=1),
        split,
        helper.make_node("Concat", ["back", "front"], ["swapped"], axis=1),
        helper.make_node("Dropout", ["swapped"], ["dropped"], **({"ratio": 0.3} if opset < 12 else {})),
        helper.make_node("Gemm", ["dropped", "fc_w", "fc_b"], ["gemm"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("LeakyRelu", ["gemm"], ["leaky"], alpha=0.2),
        helper.make_node("LogSoftmax", ["leaky"], ["scores"], axis=1),
    ]
    return make_model(nodes, [value("image", "N", 1, 10, 10)], value("scores", "N", 10), w + consts, opset,
                      weights_as_inputs=opset < 9)  # fmt: skip


@pytest.mark.parametrize("opset", [7, 9, 11, 13, 17])
def test_old_opset_forms_give_onnxruntime_s_scores(tmp_path, opset):
    path = tmp_path / f"opset{opset}.onnx"
    onnx.save(old_opset_graph(opset), path)
    model = load_onnx(path)
    assert isinstance(model, fx.GraphModule), model.note
    assert model.opset == opset and model.input_shape == (1, 10, 10)
    x = images(3, (1, 10, 10))
    with torch.no_grad():
        ours = model(x).numpy()
    assert np.abs(ours - ort_scores(path, x.numpy())).max() <= 1e-5
    assert isinstance(model.get_submodule("batchnormalization"), nn.BatchNorm2d)


def test_version_converter_upgrades(exported, lecture, tmp_path):
    """The opset-7 export upgraded by onnx's version converter (as tools do) reads the same in each opset."""
    source = onnx.load(exported["cnn-legacy-7"])
    for opset in (9, 11, 14):
        path = tmp_path / f"up{opset}.onnx"
        onnx.save(onnx.version_converter.convert_version(source, opset), path)
        model = load_onnx(path)
        assert model.opset == opset and isinstance(model, fx.GraphModule), model.note
        assert_same(model, lecture)


def keras_style_graph():
    """What tf2onnx writes for a Keras CNN: NHWC input, a Transpose to NCHW first, a SAME-padded strided conv,
    a Transpose back before flattening (so the dense weights are in NHWC order), MatMul + Add, Softmax."""
    w = weights(seed=3, kernel=(4, 1, 3, 3), bias=(4,), dense=(196, 10), dense_bias=(10,))
    nodes = [
        helper.make_node("Transpose", ["input_1"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "kernel", "bias"], ["conv"], strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("MaxPool", ["relu"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Transpose", ["pool"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["nhwc", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "dense"], ["logits0"]),
        helper.make_node("Add", ["logits0", "dense_bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["dense_2"]),
    ]
    consts = [("flat_shape", np.array([-1, 196], dtype=np.int64))]
    return make_model(nodes, [value("input_1", "unk__6", 28, 28, 1)], value("dense_2", "unk__7", 10), w + consts, 13)


def test_keras_style_nhwc_graph(tmp_path):
    path = tmp_path / "keras.onnx"
    onnx.save(keras_style_graph(), path)
    model = load_onnx(path)
    assert isinstance(model, fx.GraphModule), model.note
    assert (model.input_layout, model.input_shape) == ("NHWC", (1, 28, 28))
    assert isinstance(model.get_submodule("conv"), nn.Conv2d) and model.get_submodule("conv").bias is not None
    x = images(4)
    with torch.no_grad():
        ours = model(x).numpy()  # NCHW in, as every cnnlab model
    assert np.abs(ours - ort_scores(path, x.numpy().transpose(0, 2, 3, 1).copy())).max() <= 1e-5
    assert model.code.count("torch.permute(") == 1  # the input's permute cancels the graph's first Transpose


def model_zoo_mnist_graph():
    """The layout of the ONNX model zoo's MNIST (mnist-8): opset 8, a fixed batch of 1, convolutions with
    SAME_UPPER padding and the bias as a separate Add, the dense weights reshaped in the graph, Reshape to a
    constant [1, 256]."""
    w = weights(seed=4, Parameter5=(8, 1, 5, 5), Parameter6=(8, 1, 1), Parameter87=(16, 8, 5, 5))
    w += weights(seed=5, Parameter88=(16, 1, 1), Parameter193=(16, 4, 4, 10), Parameter194=(1, 10))
    shapes = [("Pooling160_Output_0_reshape0_shape", np.array([1, 256])), ("Parameter193_reshape1_shape",
              np.array([256, 10]))]  # fmt: skip
    conv = dict(kernel_shape=[5, 5], strides=[1, 1], auto_pad="SAME_UPPER")
    nodes = [
        helper.make_node("Reshape", ["Parameter193", "Parameter193_reshape1_shape"], ["Parameter193_reshape1"]),
        helper.make_node("Conv", ["Input3", "Parameter5"], ["Convolution28_Output_0"], name="Convolution28", **conv),
        helper.make_node("Add", ["Convolution28_Output_0", "Parameter6"], ["Plus30_Output_0"], name="Plus30"),
        helper.make_node("Relu", ["Plus30_Output_0"], ["ReLU32_Output_0"], name="ReLU32"),
        helper.make_node(
            "MaxPool",
            ["ReLU32_Output_0"],
            ["Pooling66_Output_0"],
            name="Pooling66",
            kernel_shape=[2, 2],
            strides=[2, 2],
            pads=[0, 0, 0, 0],
        ),  # fmt: skip
        helper.make_node(
            "Conv", ["Pooling66_Output_0", "Parameter87"], ["Convolution110_Output_0"], name="Convolution110", **conv
        ),  # fmt: skip
        helper.make_node("Add", ["Convolution110_Output_0", "Parameter88"], ["Plus112_Output_0"], name="Plus112"),
        helper.make_node("Relu", ["Plus112_Output_0"], ["ReLU114_Output_0"], name="ReLU114"),
        helper.make_node(
            "MaxPool",
            ["ReLU114_Output_0"],
            ["Pooling160_Output_0"],
            name="Pooling160",
            kernel_shape=[3, 3],
            strides=[3, 3],
            pads=[0, 0, 0, 0],
        ),  # fmt: skip
        helper.make_node(
            "Reshape",
            ["Pooling160_Output_0", "Pooling160_Output_0_reshape0_shape"],
            ["Pooling160_Output_0_reshape0"],
            name="Times212_reshape0",
        ),  # fmt: skip
        helper.make_node(
            "MatMul", ["Pooling160_Output_0_reshape0", "Parameter193_reshape1"], ["Times212_Output_0"], name="Times212"
        ),  # fmt: skip
        helper.make_node("Add", ["Times212_Output_0", "Parameter194"], ["Plus214_Output_0"], name="Plus214"),
    ]
    return make_model(nodes, [value("Input3", 1, 1, 28, 28)], value("Plus214_Output_0", 1, 10), w + shapes, 8)


def test_model_zoo_mnist_layout_takes_any_batch(tmp_path):
    path = tmp_path / "mnist-8.onnx"
    onnx.save(model_zoo_mnist_graph(), path)
    model = load_onnx(path)
    assert isinstance(model, fx.GraphModule), model.note
    assert count_parameters(model) == 8 * 25 + 8 + 16 * 8 * 25 + 16 + 256 * 10 + 10  # the Adds became biases
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear))
    x = images(5)
    with torch.no_grad():
        ours = model(x).numpy()  # five images through a graph exported for one
    expected = np.concatenate([ort_scores(path, x[i : i + 1].numpy()) for i in range(5)])
    assert np.abs(ours - expected).max() <= 1e-5 * np.abs(expected).max()  # scores in the hundreds


def keras_mlp_graph(flat: bool):
    """A Keras MLP as tf2onnx writes it: (N, 28, 28) into Flatten, or already flat (N, 784); MatMul + Add."""
    w = weights(seed=8, w1=(784, 32), b1=(32,), w2=(32, 10), b2=(10,))
    nodes = [
        helper.make_node("Reshape", ["pixels", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["o0"]),
        helper.make_node("Add", ["o0", "b2"], ["o"]),
        helper.make_node("Softmax", ["o"], ["probabilities"], axis=-1),
    ]
    image = value("pixels", "N", 784) if flat else value("pixels", "N", 28, 28)
    consts = [("flat_shape", np.array([-1, 784], dtype=np.int64))]
    return make_model(nodes, [image], value("probabilities", "N", 10), w + consts, 13)


@pytest.mark.parametrize("flat", [False, True], ids=["NHW", "flat"])
def test_keras_mlp_on_unchannelled_input(tmp_path, flat):
    path = tmp_path / "mlp.onnx"
    onnx.save(keras_mlp_graph(flat), path)
    model = load_onnx(path)
    assert isinstance(model, fx.GraphModule), model.note
    assert (model.input_layout, model.input_shape) == ("flat" if flat else "NHW", (1, 28, 28))
    assert count_parameters(model) == 784 * 32 + 32 + 32 * 10 + 10
    x = images(3)
    graph_input = x.numpy().reshape(3, 784 if flat else 28, *(() if flat else (28,)))
    with torch.no_grad():
        assert np.abs(model(x).numpy() - ort_scores(path, graph_input)).max() <= 1e-5


@pytest.mark.parametrize("opset", [7, 9, 10, 11])
def test_upsample_and_resize_in_each_form(tmp_path, opset):
    """Upsample with its scales as an attribute (7, 8), as an input (9), Resize with scales (10) and with
    roi, scales (11 on)."""
    w = weights(seed=9, fc_w=(10, 64), fc_b=(10,))
    scales = np.array([1, 1, 2, 2], dtype=np.float32)
    if opset < 9:
        resize, consts = helper.make_node("Upsample", ["image"], ["big"], scales=scales.tolist()), []
    elif opset == 9:
        resize, consts = helper.make_node("Upsample", ["image", "scales"], ["big"]), [("scales", scales)]
    elif opset == 10:
        resize, consts = helper.make_node("Resize", ["image", "scales"], ["big"]), [("scales", scales)]
    else:
        mode = dict(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        resize = helper.make_node("Resize", ["image", "roi", "scales"], ["big"], **mode)
        consts = [("roi", np.zeros(0, np.float32)), ("scales", scales)]
    nodes = [resize, helper.make_node("Flatten", ["big"], ["flat"]), helper.make_node("Gemm", ["flat", "fc_w", "fc_b"],
             ["scores"], transB=1)]  # fmt: skip
    path = tmp_path / "up.onnx"
    image, scores = value("image", "N", 1, 4, 4), value("scores", "N", 10)
    onnx.save(make_model(nodes, [image], scores, w + consts, opset, weights_as_inputs=opset < 8), path)
    model = load_onnx(path)
    assert isinstance(model, fx.GraphModule), model.note
    x = images(2, (1, 4, 4))
    with torch.no_grad():
        assert np.abs(model(x).numpy() - ort_scores(path, x.numpy())).max() <= 1e-5


def many_ops_graph():
    """One graph (opset 20) with a branch per op and form: every activation and arithmetic op, reductions,
    norms, pads, pools and convolutions in their less usual settings, each branch flattened, all concatenated
    and classified."""
    consts = [("one", np.array(1.0, np.float32)), ("c", np.array([[[0.5]], [[-1.5]]], np.float32))]
    consts += weights(
        seed=10, slope=(2, 1, 1), inorm_scale=(2,), inorm_bias=(2,), gconv=(4, 1, 3, 3), gconv2=(4, 1, 2, 2)
    )
    consts += weights(seed=11, tconv=(2, 3, 3, 3), einsum_w=(2,), stem=(2, 1, 1, 1))
    ints = lambda name, values: consts.append((name, np.array(values, dtype=np.int64)))
    ints("axis1", [1]), ints("pads", [0, 0, 1, 1, 0, 0, 1, 1]), ints("tile", [1, 1, 2, 1]), ints("shape", [1, 2, 4, 4])
    consts += [
        ("low", np.array(-0.5, np.float32)),
        ("high", np.array(0.5, np.float32)),
        ("two", np.array(2.0, np.float32)),
    ]
    consts += [("scales", np.array([1, 1, 1.5, 1.5], np.float32)), ("roi", np.zeros(0, np.float32))]
    nodes = [helper.make_node("Conv", ["image", "stem"], ["x"])]  # two channels from one
    nodes += [helper.make_node("Abs", ["x"], ["abs_x"]), helper.make_node("Add", ["abs_x", "one"], ["pos"])]
    branches = []

    def add(op, inputs, branch=True, **attrs):
        out = f"n{len(nodes)}_{op}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        if branch:
            branches.append(out)
        return out

    for op in ["Relu", "Sigmoid", "Tanh", "Neg", "Abs", "Erf", "Floor", "Ceil", "Sign", "Sin", "Cos", "Softsign",
               "Softplus", "HardSwish", "Mish", "Exp", "Identity"]:  # fmt: skip
        add(op, ["x"])
    for op in ["Log", "Sqrt", "Reciprocal"]:
        add(op, ["pos"])
    add("LeakyRelu", ["x"], alpha=0.2), add("Elu", ["x"], alpha=0.7), add("Celu", ["x"], alpha=1.3)
    add("Selu", ["x"]), add("Gelu", ["x"], approximate="tanh"), add("Gelu", ["x"])
    add("HardSigmoid", ["x"], alpha=0.3, beta=0.4), add("ThresholdedRelu", ["x"], alpha=0.5)
    add("Clip", ["x", "low", "high"]), add("Clip", ["x", "", "high"]), add("PRelu", ["x", "slope"])
    add("Add", ["x", "c"]), add("Sub", ["one", "x"]), add("Mul", ["x", "x"]), add("Div", ["x", "pos"])
    add("Pow", ["pos", "two"]), add("Max", ["x", "c"]), add("Min", ["x", "high"])
    add("Sum", ["x", "x", "pos"]), add("Mean", ["x", "pos"])
    for op in ["ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceL2", "ReduceLogSumExp"]:
        add(op, ["x", "axis1"])
    add("Expand", [add("ReduceMean", ["x", "axis1"], branch=False, keepdims=1), "shape"])
    quarter = numpy_helper.from_array(np.array([0.25], np.float32))
    add("Add", ["x", add("ConstantOfShape", [add("Shape", ["x"], branch=False)], branch=False, value=quarter)])
    add("InstanceNormalization", ["x", "inorm_scale", "inorm_bias"], epsilon=1e-3)
    add("LRN", ["x"], size=3, alpha=1e-2, beta=0.6, bias=1.5), add("LpNormalization", ["x"], axis=1, p=1)
    for mode in ["reflect", "edge", "wrap", "constant"]:
        add("Pad", ["x", "pads"], mode=mode)
    add("Tile", ["x", "tile"]), add("Transpose", ["x"], perm=[0, 1, 3, 2]), add("GlobalMaxPool", ["x"])
    (
        add("Softmax", ["x"], axis=1),
        add("LogSoftmax", ["x"]),
        add("Einsum", ["x", "einsum_w"], equation="nchw,c->nchw"),
    )
    add("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")
    add("MaxPool", ["x"], kernel_shape=[2, 2], pads=[1, 1, 1, 1], dilations=[2, 2], ceil_mode=1)
    add("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)
    add("AveragePool", ["x"], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1], count_include_pad=1)
    add("Conv", ["x", "gconv2"], group=2, auto_pad="SAME_LOWER")
    add("Conv", ["x", "gconv"], group=2, dilations=[2, 2], pads=[0, 1, 1, 0])
    add("ConvTranspose", ["x", "tconv"], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])
    add("Resize", ["x", "roi", "scales"], mode="linear", coordinate_transformation_mode="align_corners")
    add("Resize", ["x", "roi", "scales"], mode="cubic", coordinate_transformation_mode="half_pixel")
    add("Cast", [add("Cast", ["x"], branch=False, to=TensorProto.DOUBLE)], to=TensorProto.FLOAT)
    branches += ["first", "second"]
    nodes.append(helper.make_node("Split", ["x"], ["first", "second"], axis=2, num_outputs=2))
    flat = [add("Flatten", [name], branch=False) for name in branches]  # every value of every branch counts
    nodes.append(helper.make_node("Concat", flat, ["all"], axis=1))
    features = make_model(nodes, [value("image", "N", 1, 4, 4)], value("all", "N", "F"), consts, 20)
    size = ort_scores(features.SerializeToString(), np.zeros((1, 1, 4, 4), np.float32)).shape[1]
    consts += weights(seed=12, fc_w=(10, size), fc_b=(10,))
    nodes.append(helper.make_node("Gemm", ["all", "fc_w", "fc_b"], ["scores"], transB=1))
    return make_model(nodes, [value("image", "N", 1, 4, 4)], value("scores", "N", 10), consts, 20)


def test_every_op_and_form_matches_onnxruntime(tmp_path):
    path = tmp_path / "many.onnx"
    onnx.save(many_ops_graph(), path)
    model = load_onnx(path)
    assert isinstance(model, fx.GraphModule), model.note
    x = images(3, (1, 4, 4))
    with torch.no_grad():
        ours = model(x).numpy()
    expected = ort_scores(path, x.numpy())
    assert np.abs(ours - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())


def test_any_node_names_make_valid_code(tmp_path):
    """Names are the file's to choose: digits, keywords, `self`, `forward`, paths, non-ASCII letters."""
    w = weights(seed=1, **{"0.weight": (4, 1, 3, 3), "class": (4,), "forward.weight": (4, 4, 1, 1), "x": (10, 4)})
    nodes = [
        helper.make_node("Conv", ["image", "0.weight", "class"], ["a"], name="123"),
        helper.make_node("Relu", ["a"], ["b"], name="class"),
        helper.make_node("Conv", ["b", "forward.weight"], ["c"], name="/"),
        helper.make_node("Relu", ["c"], ["d"], name="x"),
        helper.make_node("GlobalAveragePool", ["d"], ["e"], name="self"),
        helper.make_node("Flatten", ["e"], ["f"], name="a.b/c d"),
        helper.make_node("Gemm", ["f", "x"], ["scores"], transB=1, name="ünïcode"),
    ]
    path = tmp_path / "names.onnx"
    onnx.save(make_model(nodes, [value("image", "N", 1, 8, 8)], value("scores", "N", 10), w, 13), path)
    model = load_onnx(path)
    assert isinstance(model, fx.GraphModule), model.note
    x = images(2, (1, 8, 8))
    with torch.no_grad():
        assert np.abs(model(x).numpy() - ort_scores(path, x.numpy())).max() <= 1e-5


def test_a_graph_sized_to_exhaust_memory_is_not_built(tmp_path):
    """A Pad of a billion rows is refused before anything is allocated (onnxruntime refuses to run it too)."""
    w = weights(seed=7, fc_w=(10, 64), fc_b=(10,))
    nodes = [
        helper.make_node("Pad", ["image", "pads"], ["big"]),
        helper.make_node("Slice", ["big", "starts", "ends", "axes"], ["small"]),
        helper.make_node("Flatten", ["small"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["scores"], transB=1),
    ]
    ints = lambda name, values: (name, np.array(values, dtype=np.int64))
    consts = [ints("pads", [0, 0, 0, 0, 0, 0, 10**9, 0]), ints("starts", [0]), ints("ends", [8]), ints("axes", [2])]
    path = save(make_model(nodes, [value("image", "N", 1, 8, 8)], value("scores", "N", 10), w + consts, 13),
                tmp_path / "huge.onnx")  # fmt: skip
    with pytest.raises(CnnlabError, match="onnxruntime cannot run it") as error:
        load_onnx(path)
    assert "does not rebuild Pad (it would build more than 67,108,864 values)" in str(error.value)


# --- what cannot be rebuilt runs through onnxruntime --------------------------------------------------------------


def fused_graph(domain="com.microsoft", op="FusedConv"):
    """onnxruntime's own fused convolution (what a model saved after onnxruntime's optimiser holds), which cnnlab
    does not rebuild; a fixed batch of 2."""
    w = weights(seed=6, w=(4, 1, 3, 3), b=(4,), fc_w=(10, 4), fc_b=(10,))
    nodes = [
        helper.make_node(op, ["image", "w", "b"], ["conv"], domain=domain, activation="Relu", name="fused"),
        helper.make_node("GlobalAveragePool", ["conv"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["scores"], transB=1, name="fc"),
    ]
    graph = helper.make_graph(nodes, "g", [value("image", 2, 1, 8, 8)], [value("scores", 2, 10)],
                              [numpy_helper.from_array(a, n) for n, a in w])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(domain, 1)])
    model.ir_version = 7
    return model


def test_unknown_op_runs_through_onnxruntime_with_maps(tmp_path):
    path = tmp_path / "fused.onnx"
    onnx.save(fused_graph(), path)
    model = load_onnx(path)
    assert isinstance(model, OnnxRuntimeModel)
    assert model.unsupported == ["com.microsoft.FusedConv"] and "FusedConv" in model.note
    assert model.parity is None and (model.input_shape, model.num_classes) == ((1, 8, 8), 10)
    x = images(3, (1, 8, 8))  # three images through a graph fixed to two: two chunks, the second padded
    padded = np.concatenate([x.numpy(), np.zeros((1, 1, 8, 8), np.float32)])
    expected = np.concatenate([ort_scores(path, padded[:2]), ort_scores(path, padded[2:])])[:3]
    assert np.abs(model(x).numpy() - expected).max() <= 1e-6
    maps = model.intermediate(x[:1])
    assert [(name, op) for name, op, _ in maps] == [
        ("fused", "FusedConv"),
        ("gap", "GlobalAveragePool"),
        ("flatten", "Flatten"),
        ("fc", "Gemm"),
    ]
    assert maps[0][2].shape == (1, 4, 6, 6) and (maps[0][2] >= 0).all()  # the fused ReLU's maps
    assert torch.allclose(maps[-1][2], model(x[:1]))
    assert isinstance(copy.deepcopy(model)(x), torch.Tensor)


def test_graph_summary_counts_what_pytorch_counts(exported, lecture, tmp_path):
    """The graph's own arithmetic (for the onnxruntime model, which has no layers to count) gives the lecture
    CNN's 8,490 parameters and the FLOPs torch.utils.flop_counter counts, layer by layer."""
    model = load_onnx(exported["cnn-legacy"])
    rows = graph_summary(model)
    assert rows[0][1:] == ["Conv", "1x28x28", "10x24x24", 260, 2 * 10 * 24 * 24 * 25]
    assert [row[1] for row in rows] == ["Conv", "MaxPool", "Relu", "Conv", "MaxPool", "Relu", "Reshape", "Gemm",
                                        "LogSoftmax"]  # fmt: skip
    assert graph_parameters(model) == 8490 == sum(row[4] for row in rows)
    assert sum(row[5] for row in rows) == count_flops(lecture, (1, 28, 28))
    fused = load_onnx(save(fused_graph(), tmp_path / "fused.onnx"))
    assert [row[1:4] for row in graph_summary(fused)][:2] == [["FusedConv", "1x8x8", "4x6x6"], ["GlobalAveragePool",
                                                              "4x6x6", "4x1x1"]]  # fmt: skip
    assert graph_parameters(fused) == 4 * 9 + 4 + 40 + 10


# --- bad files: one line each ---------------------------------------------------------------------------------------


def assert_refused(path, match, **options):
    with pytest.raises(CnnlabError, match=match) as error:
        load_onnx(path, **options)
    assert "\n" not in str(error.value)


def test_bad_bytes_are_refused(exported, tmp_path):
    data = exported["cnn-legacy"].read_bytes()
    for name, content in [("truncated", data[: len(data) // 2]), ("cut", data[:-3]), ("text", b"not a model\n"),
                          ("png", b"\x89PNG\r\n\x1a\n" + bytes(range(256))), ("empty", b"")]:  # fmt: skip
        (tmp_path / name).write_bytes(content)
        assert_refused(tmp_path / name, "not an ONNX model, or a truncated one")
    assert_refused(exported["cnn-legacy"], "bytes is more than the 1,000 allowed", max_bytes=1000)
    assert_refused(tmp_path / "absent.onnx", "cannot read")


def save(model, path):
    onnx.save(model, path)
    return path


def simple_graph(image, scores, extra_inputs=(), tail=()):
    w = weights(seed=7, fc_w=(10, 64), fc_b=(10,))
    nodes = [helper.make_node("Flatten", ["image"], ["flat"]), helper.make_node("Gemm", ["flat", "fc_w", "fc_b"],
             ["scores" if not tail else "gemm"], transB=1), *tail]  # fmt: skip
    graph = helper.make_graph(nodes, "g", [image, *extra_inputs], [scores],
                              [numpy_helper.from_array(a, n) for n, a in w])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


def test_graphs_cnnlab_cannot_feed_are_refused(tmp_path):
    one = value("image", "N", 1, 8, 8)
    ok = save(simple_graph(one, value("scores", "N", 10)), tmp_path / "ok.onnx")
    assert isinstance(load_onnx(ok), fx.GraphModule)
    two = simple_graph(one, value("scores", "N", 10), extra_inputs=[value("mask", "N", 1)])
    assert_refused(save(two, tmp_path / "two.onnx"), r"takes 2 inputs \(image, mask\)")
    four = simple_graph(value("image", "N", 4, 4, 4), value("scores", "N", 10))
    assert_refused(save(four, tmp_path / "four.onnx"), "input is N x 4 x 4 x 4; cnnlab feeds images of 1 or 3")
    ints = simple_graph(value("image", "N", 1, 8, 8, elem=TensorProto.UINT8), value("scores", "N", 10))
    assert_refused(save(ints, tmp_path / "ints.onnx"), "holds uint8")
    tail = [helper.make_node("Unsqueeze", ["gemm", "axes"], ["scores"])]
    rank4 = simple_graph(one, value("scores", "N", 10, 1, 1), tail=tail)
    rank4.graph.initializer.append(numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes"))
    assert_refused(save(rank4, tmp_path / "rank4.onnx"), "output is N x 10 x 1 x 1; cnnlab needs N x classes")
    undeclared = simple_graph(one, value("scores", "N", "classes"), tail=tail)  # a rank the graph does not keep
    undeclared.graph.initializer.append(numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes"))
    assert_refused(save(undeclared, tmp_path / "undeclared.onnx"), "gives 2 x 10 x 1 x 1 for 2 images")
    open_size = simple_graph(value("image", "N", 1, "H", "W"), value("scores", "N", 10))
    assert_refused(save(open_size, tmp_path / "open.onnx"), "does not fix its images' height and width")
    assert load_onnx(tmp_path / "open.onnx", input_size=(8, 8)).input_shape == (1, 8, 8)
    assert_refused(tmp_path / "ok.onnx", "takes 8x8 images; the data's are 28x28", input_size=(28, 28))


def test_an_op_nobody_runs_is_refused(tmp_path):
    assert_refused(save(fused_graph("my.ops", "Frobnicate"), tmp_path / "custom.onnx"),
                   "does not rebuild my.ops.Frobnicate, and onnxruntime cannot run it")  # fmt: skip


def test_external_weights_stay_in_the_model_s_folder(tmp_path):
    model = simple_graph(value("image", "N", 1, 8, 8), value("scores", "N", 10))
    weight = model.graph.initializer[0]
    (tmp_path / "secret.bin").write_bytes(weight.raw_data)
    inner = tmp_path / "models"
    inner.mkdir()
    onnx.external_data_helper.set_external_data(weight, location="../secret.bin")
    weight.ClearField("raw_data")
    assert_refused(save(model, inner / "escape.onnx"), "outside the model's folder")
