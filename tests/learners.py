"""Networks as learners write them, shared by the tests of the views that must open them (stages, ONNX)."""

import torch.nn as nn
import torch.nn.functional as F

# The lecture CNN's stages as the lab draws them, (name, shape): whether registered or typed by a learner.
LECTURE_STAGES = [
    ("conv1", (10, 24, 24)),
    ("mp + ReLU", (10, 12, 12)),
    ("conv2", (20, 8, 8)),
    ("mp + ReLU", (20, 4, 4)),
    ("flatten", (320,)),
    ("fc", (10,)),
    ("softmax", (10,)),
]


class LectureNet(nn.Module):
    """Lecture 10's Net as typed in the lecture: one MaxPool2d used twice, F.relu, x.view, log_softmax without dim."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.mp = nn.MaxPool2d(2)
        self.fc = nn.Linear(320, 10)

    def forward(self, x):
        in_size = x.size(0)
        x = F.relu(self.mp(self.conv1(x)))
        x = F.relu(self.mp(self.conv2(x)))
        x = x.view(in_size, -1)
        x = self.fc(x)
        return F.log_softmax(x)
