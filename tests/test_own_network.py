"""A learner's own network, from a script as learners type it: taken without running the script, built for the
data's shape, checked, and explained stage by stage; the spec that names it; the code-trust rule of run folders.

Every script here is written the way the lectures and the tutorials learners follow write them, with no
registered model behind it. cnnlab has no torchvision: a script that imported it at the top level and ran it
would fail at once, so building these models at all shows the script's top level did not run.
"""

import textwrap

import pytest
import torch

from cnnlab import CnnlabError
from cnnlab.explain.stages import explain_cell, trace
from cnnlab.external.script import load_script
from cnnlab.external.spec import ONNX, REGISTRY, SCRIPT, build_model_from_spec, parse_model_args, parse_spec
from cnnlab.external.trust import is_trusted, remember, sha256, trusted_source
from cnnlab.models import count_parameters, create_model
from conftest import ROOT
from learners import LECTURE_STAGES

MNIST = dict(in_channels=1, num_classes=10, input_size=(28, 28))

# Lecture 10 (PyTorch Zero To All, 10_1_cnn_mnist.py) as the learner types it: the script docs/own-network.md shows,
# with a visible side effect added at the top level: the file SIDE_EFFECT would exist if any of the top level ran.
LECTURE_CNN = (
    (ROOT / "docs/own-network/lecture.py")
    .read_text()
    .replace(
        "batch_size = 64\n",
        'batch_size = 64\nopen("SIDE_EFFECT", "w").write("the script\'s top level ran")\nprint("downloading MNIST")\n',
        1,
    )
)
assert "SIDE_EFFECT" in LECTURE_CNN

# Lecture 11 (11_1_toy_inception_mnist.py): InceptionA, used by Net, in the same file.
LECTURE_INCEPTION = """\
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torchvision import datasets, transforms

train_loader = torch.utils.data.DataLoader(
    datasets.MNIST('./data/', train=True, transform=transforms.ToTensor(), download=True), batch_size=64)


class InceptionA(nn.Module):

    def __init__(self, in_channels):
        super(InceptionA, self).__init__()
        self.branch1x1 = nn.Conv2d(in_channels, 16, kernel_size=1)

        self.branch5x5_1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch5x5_2 = nn.Conv2d(16, 24, kernel_size=5, padding=2)

        self.branch3x3dbl_1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch3x3dbl_2 = nn.Conv2d(16, 24, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = nn.Conv2d(24, 24, kernel_size=3, padding=1)

        self.branch_pool = nn.Conv2d(in_channels, 24, kernel_size=1)

    def forward(self, x):
        branch1x1 = self.branch1x1(x)

        branch5x5 = self.branch5x5_1(x)
        branch5x5 = self.branch5x5_2(branch5x5)

        branch3x3dbl = self.branch3x3dbl_1(x)
        branch3x3dbl = self.branch3x3dbl_2(branch3x3dbl)
        branch3x3dbl = self.branch3x3dbl_3(branch3x3dbl)

        branch_pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)
        branch_pool = self.branch_pool(branch_pool)

        outputs = [branch1x1, branch5x5, branch3x3dbl, branch_pool]
        return torch.cat(outputs, 1)


class Net(nn.Module):

    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(88, 20, kernel_size=5)

        self.incept1 = InceptionA(in_channels=10)
        self.incept2 = InceptionA(in_channels=20)

        self.mp = nn.MaxPool2d(2)
        self.fc = nn.Linear(1408, 10)

    def forward(self, x):
        in_size = x.size(0)
        x = F.relu(self.mp(self.conv1(x)))
        x = self.incept1(x)
        x = F.relu(self.mp(self.conv2(x)))
        x = self.incept2(x)
        x = x.view(in_size, -1)  # flatten the tensor
        x = self.fc(x)
        return F.log_softmax(x)


model = Net()
optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
for epoch in range(1, 10):
    for data, target in train_loader:
        optimizer.zero_grad()
        F.nll_loss(model(data), target).backward()
        optimizer.step()
"""

# A 3x32x32 RGB network with constants, a helper function, a dataclass config, BatchNorm and a residual add,
# written in forward; the script runs a training loop under its main guard.
RGB_RESIDUAL = """\
from dataclasses import dataclass
import math
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms as T
import matplotlib.pyplot as plt

NUM_CLASSES = 10
CHANNELS = (16, 32)
EPS = 1e-5 * 2
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class Config:
    dropout: float = 0.25
    hidden: int = CHANNELS[-1] * 2


def conv_bn(c_in, c_out, stride=1):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out, eps=EPS))


class ResNetish(nn.Module):
    def __init__(self, config: Config = Config()):
        super().__init__()
        self.stem = conv_bn(3, CHANNELS[0])
        self.conv1 = nn.Conv2d(CHANNELS[0], CHANNELS[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(CHANNELS[0])
        self.down = conv_bn(CHANNELS[0], CHANNELS[1], stride=2)
        self.fc1 = nn.Linear(CHANNELS[1], config.hidden)
        self.drop = nn.Dropout(config.dropout)
        self.fc2 = nn.Linear(config.hidden, NUM_CLASSES)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=math.sqrt(5))

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(self.bn1(self.conv1(x)) + x)  # the residual add
        x = F.relu(self.down(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc2(self.drop(F.relu(self.fc1(x))))


if __name__ == "__main__":
    transform = T.Compose([T.ToTensor()])
    model = ResNetish().to(device)
    print(model)
    plt.show()
"""

SEQUENTIAL = """\
import torch
from torch import nn

model = nn.Sequential(
    nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(16 * 5 * 5, 10),
)
loss_fn = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
"""

FACTORY = """\
import torch.nn as nn

def make_model(width=16, num_classes=10):
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, num_classes))
"""

# The "PyTorch: deep learning with PyTorch, a 60 minute blitz" style: hyper-parameters at the top, the model
# built from them, one MLP that expects flat rows (the loop flattens the images).
TUTORIAL_MLP = """\
import torch
import torch.nn as nn
import torchvision

input_size = 784
hidden_size = 500
num_classes = 10
device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')

class NeuralNet(nn.Module):
    def __init__(self, input_size, hidden_size, num_classes):
        super(NeuralNet, self).__init__()
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden_size, num_classes)

    def forward(self, x):
        out = self.fc1(x)
        out = self.relu(out)
        return self.fc2(out)

model = NeuralNet(input_size, hidden_size, num_classes).to(device)
for images, labels in torchvision.datasets.MNIST('.'):
    outputs = model(images.reshape(-1, 28 * 28).to(device))
"""


@pytest.fixture
def script(tmp_path, monkeypatch):
    """write(text, name): a learner's script in its own folder, the current directory (where its top level
    would write its files if it ran)."""
    monkeypatch.chdir(tmp_path)

    def write(text: str, name: str = "net.py"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


def build(spec, **shape):
    return build_model_from_spec(str(spec), **(MNIST | shape))


def test_the_lecture_cnn_is_taken_without_running_the_script(script, tmp_path, capsys):
    path = script(LECTURE_CNN)
    taken = load_script(path)
    assert (taken.name, taken.kind, taken.taken) == ("Net", "class", ("nn", "F", "Net"))
    model = build(path)
    assert count_parameters(model) == 8_490  # the lecture's count, read from the learner's source
    assert not (tmp_path / "SIDE_EFFECT").exists() and "downloading" not in capsys.readouterr().out
    digit = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    traced = trace(model.eval(), digit)
    assert [(s.name, tuple(s.values.shape)) for s in traced.stages] == LECTURE_STAGES
    explained = explain_cell(traced.convs["conv2"], 7, 3, 5)
    assert explained["sum"] == pytest.approx(traced.stages[2].values[7, 3, 5].item(), abs=1e-5)


def test_the_lecture_inception_net_is_chosen_over_the_block_it_uses(script):
    path = script(LECTURE_INCEPTION)
    taken = load_script(path)
    assert taken.name == "Net" and "InceptionA" in taken.taken
    model = build(path)
    assert count_parameters(model) == count_parameters(create_model("inception")) == 97_298
    traced = trace(model.eval(), torch.zeros(1, 1, 28, 28))
    assert [b.name for b in next(s for s in traced.stages if s.name == "incept1").branches] == [
        "branch1x1",
        "branch5x5",
        "branch3x3dbl",
        "branch_pool",
    ]


def test_an_rgb_residual_network_with_constants_a_helper_and_a_dataclass_config(script):
    path = script(RGB_RESIDUAL)
    taken = load_script(path)
    assert taken.name == "ResNetish"
    assert set(taken.taken) == {"dataclass", "math", "torch", "nn", "F", "NUM_CLASSES", "CHANNELS", "EPS"} | {
        "Config",
        "conv_bn",
        "ResNetish",
    }  # not T, plt, device: the class does not use them
    model = build(path, in_channels=3, input_size=(32, 32))
    assert model.stem[1].eps == pytest.approx(2e-5) and model.fc1.out_features == 64
    traced = trace(model.eval(), torch.randn(1, 3, 32, 32))
    assert [(s.name, s.conv) for s in traced.stages] == [
        ("stem.0: Conv2d", True),  # conv_bn's Sequential: its modules are stages in its place
        ("stem.1: BatchNorm2d + ReLU", False),
        ("conv1", True),
        ("bn1", False),
        ("add + ReLU", False),
        ("down.0: Conv2d", True),
        ("down.1: BatchNorm2d + ReLU", False),
        ("global average pool", False),
        ("flatten", False),
        ("fc1 + ReLU", False),
        ("fc2", False),
        ("softmax", False),
    ]
    assert traced.stages[3].receptive_field.size == (5, 5) and traced.stages[4].receptive_field is None  # 2 paths


def test_a_sequential_built_at_the_top_level_is_the_model(script):
    path = script(SEQUENTIAL)
    assert load_script(path).kind == "variable"
    model = build(f"{path}:model")
    first, second = build(path), build(path)
    assert count_parameters(model) == 8 * 9 + 8 + 16 * 72 + 16 + 400 * 10 + 10
    assert not torch.equal(first[0].weight, second[0].weight)  # a fresh model each time


def test_a_factory_takes_its_arguments_from_model_args_and_the_dataset(script):
    path = script(FACTORY)
    assert build(f"{path}:make_model")[0].out_channels == 16
    model = build_model_from_spec(f"{path}:make_model", **MNIST, model_args={"width": 32})
    assert model[0].out_channels == 32
    assert build_model_from_spec(f"{path}:make_model", **(MNIST | {"num_classes": 3}))[-1].out_features == 3
    with pytest.raises(CnnlabError, match=r"make_model does not take 'depth' \(it takes: width, num_classes\)"):
        build_model_from_spec(f"{path}:make_model", **MNIST, model_args={"depth": 3})


def test_the_scripts_own_call_gives_the_arguments_and_a_flat_input_is_named(script):
    path = script(TUTORIAL_MLP)
    taken = load_script(path)
    assert taken.arguments == {"input_size": 784, "hidden_size": 500, "num_classes": 10}
    with pytest.raises(CnnlabError) as error:
        build(path)
    message = str(error.value)
    assert "fails on 1x28x28 images, at line 18 (`out = self.fc1(x)`)" in message
    assert "it runs on 784 values an image (the images flattened): flatten x at the start of forward" in message
    assert "\n" not in message


def test_notebook_exports_with_shell_lines_load(script):
    path = script("!pip install torchvision\n%matplotlib inline\n" + SEQUENTIAL)
    assert count_parameters(build(path)) == 5_258


@pytest.mark.parametrize(
    "text, spec, expected",
    [
        (
            "import torch.nn as nn\nimport torchvision\n\nclass Net(nn.Module):\n    def __init__(self):\n"
            "        super().__init__()\n        self.block = torchvision.ops.misc.Conv2dNormActivation(1, 8, 3)\n",
            "net.py",
            r"net.py: Net uses `torchvision` \(line 7\), imported from torchvision \(line 2\), "
            r"which cnnlab does not load",
        ),
        (
            "import torch.nn as nn\nfrom torchvision.ops import misc\n\ndef block(c):\n    return misc.Permute([0])\n\n"
            "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.b = block(1)\n",
            "net.py",
            r"block \(used by Net\) uses `misc` \(line 5\), imported from torchvision.ops \(line 2\)",
        ),
        (
            "import torch.nn as nn\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            "        self.fc = nn.Linear(784, 10\n",
            "net.py",
            r"net.py, line 6: syntax error: '\(' was never closed",
        ),
        (
            "import torch.nn as nn\n\nclass MLP(nn.Module):\n    pass\n\nclass CNN(nn.Module):\n    pass\n",
            "net.py",
            r"net.py defines 2 models: MLP \(line 3\), CNN \(line 6\); name one, e.g. .*net.py:CNN",
        ),
        (SEQUENTIAL, "net.py:Net", r"net.py does not define Net"),
        ("x = 1\n", "net.py", r"defines no nn.Module subclass nor a variable holding one"),
        (
            "import torch.nn as nn\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            "        self.fc = nn.Linear(args.hidden, 10)\n\nif __name__ == '__main__':\n    args = parse()\n",
            "net.py",
            r"Net uses `args` \(line 6\), which the script sets only as it runs \(line 9\)",
        ),
        (
            "import torch.nn as nn\n\nclass Net(nn.Module):\n    def __init__(self, hidden):\n"
            "        super().__init__()\n        self.fc = nn.Linear(784, hidden)\n",
            "net.py",
            r"Net needs hidden, which the script does not pass where cnnlab can read it: "
            r"give it with --model-args '\{\"hidden\": ...\}'",
        ),
        (
            "import torch.nn as nn\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            "        self.fc = nn.Linear(784, 5)\n\n    def forward(self, x):\n        return self.fc(x.flatten(1))\n",
            "net.py",
            r"net.py:Net gives 2x5 for a batch of 2 1x28x28 images; cnnlab needs 2x10: one score per class",
        ),
        (
            "import torch.nn as nn\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            "        self.fc = nn.Linear(784, 10)\n        raise ValueError('not yet')\n",
            "net.py",
            r"net.py:Net cannot be built: line 7 \(`raise ValueError\('not yet'\)`\): ValueError: not yet",
        ),
        ("", "missing.py", r"no such file: missing.py"),
    ],
)
def test_what_cannot_be_taken_is_one_line_naming_it(script, text, spec, expected):
    if text:
        script(text)
    with pytest.raises(CnnlabError, match=expected) as error:
        build(spec)
    assert "\n" not in str(error.value)


def test_the_lecture_cnn_on_colour_images_says_what_it_expects(script):
    path = script(LECTURE_CNN)
    with pytest.raises(CnnlabError) as error:
        build(path, in_channels=3, input_size=(32, 32))
    assert "fails on 3x32x32 images, at line 37 (`x = F.relu(self.mp(self.conv1(x)))`)" in str(error.value)
    assert str(error.value).endswith("; it runs on 1x28x28 images")


def test_specs_resolve_in_one_place_and_registered_names_are_unchanged():
    assert parse_spec("cnn").kind == REGISTRY
    spec = parse_spec("nets/lenet.py:LeNet")
    assert (spec.kind, str(spec.path), spec.member, spec.label) == (SCRIPT, "nets/lenet.py", "LeNet", "lenet.py:LeNet")
    assert parse_spec("exported/Model.ONNX").kind == ONNX
    with pytest.raises(CnnlabError, match="after the colon"):
        parse_spec("net.py:Net(3)")
    torch.manual_seed(0)
    registered = build_model_from_spec("inception", **MNIST)
    torch.manual_seed(0)
    direct = create_model("inception", **MNIST)
    assert registered.state_dict().keys() == direct.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(registered.state_dict().values(), direct.state_dict().values()))
    assert parse_model_args('{"width": 32}') == {"width": 32}
    for bad in ("[1, 2]", "{width: 3}"):
        with pytest.raises(CnnlabError, match="JSON"):
            parse_model_args(bad)


def test_code_runs_when_trained_here_or_trusted_and_not_otherwise(tmp_path):
    copy = tmp_path / "run" / "model.py"
    copy.parent.mkdir()
    copy.write_text(SEQUENTIAL)
    recorded = sha256(copy.read_bytes())
    with pytest.raises(CnnlabError, match=r"runs the Python code of .*model.py \(class Net.*add --trust-code"):
        trusted_source(copy, recorded=recorded, what="class Net", trust_code=False)
    assert remember(copy.read_bytes(), origin="net.py") == recorded and is_trusted(recorded)
    assert trusted_source(copy, recorded=recorded, what="class Net", trust_code=False) == copy.read_bytes()
    assert (tmp_path / "config" / "cnnlab" / "trusted-code" / recorded).read_text() == "net.py\n"

    copy.write_text(SEQUENTIAL + "open('PWNED', 'w')\n")  # changed after training; its hash no longer matches
    with pytest.raises(CnnlabError, match="was changed after training"):
        trusted_source(copy, recorded=recorded, what="class Net", trust_code=False)
    forged = sha256(copy.read_bytes())  # the recorded hash updated to match: still code this machine never trained
    with pytest.raises(CnnlabError, match="not trained on this machine: read it, then add --trust-code"):
        trusted_source(copy, recorded=forged, what="class Net", trust_code=False)
    assert trusted_source(copy, recorded=forged, what="class Net", trust_code=True) == copy.read_bytes()
    assert not is_trusted("../../etc/passwd")
