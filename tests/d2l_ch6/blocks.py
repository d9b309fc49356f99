'''The code of d2l chapter 6 (sections 6.2-6.6, PyTorch edition) and of the seed notes' exercises, as written
for PyTorch. Where the book shows a cell's value, the block prints it. ``DETERMINISTIC`` names the blocks whose
printout does not depend on random numbers (those are compared with PyTorch's, see test_d2l_chapter6.py).'''

BLOCKS = {}

# ---------------------------------------------------------------------------------------------- 6.2 conv-layer
BLOCKS["6.2 corr2d"] = """
import torch
from torch import nn
from d2l import torch as d2l

def corr2d(X, K):  #@save
    h, w = K.shape
    Y = torch.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + h, j:j + w] * K).sum()
    return Y

X = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
K = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
print(corr2d(X, K))
"""

BLOCKS["6.2 Conv2D class and its backward"] = """
import torch
from torch import nn
from d2l import torch as d2l

class Conv2D(nn.Module):
    def __init__(self, kernel_size):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(kernel_size))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return d2l.corr2d(x, self.weight) + self.bias

conv = Conv2D((2, 2))
print(conv.weight.shape, conv.bias.shape)
with torch.no_grad():
    conv.weight[:] = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
X = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
Y = conv(X)
print(Y)
Y.sum().backward()
print(conv.weight.grad)
print(conv.bias.grad)
"""

BLOCKS["6.2 edge detection"] = """
import torch
from d2l import torch as d2l

X = torch.ones((6, 8))
X[:, 2:6] = 0
print(X)
K = torch.tensor([[1.0, -1.0]])
Y = d2l.corr2d(X, K)
print(Y)
print(d2l.corr2d(X.t(), K))
"""

LEARN_KERNEL = """
import torch
from torch import nn
from d2l import torch as d2l

X = torch.ones((6, 8))
X[:, 2:6] = 0
K = torch.tensor([[1.0, -1.0]])
Y = d2l.corr2d(X, K)
# 构造一个二维卷积层，它具有1个输出通道和形状为（1，2）的卷积核
conv2d = nn.Conv2d(1,1, kernel_size=(1, 2), bias=False)
{start}
# 这个二维卷积层使用四维输入和输出格式（批量大小、通道、高度、宽度），
# 其中批量大小和通道数都为1
X = X.reshape((1, 1, 6, 8))
Y = Y.reshape((1, 1, 6, 7))
lr = 3e-2  # 学习率

for i in range(10):
    Y_hat = conv2d(X)
    l = (Y_hat - Y) ** 2
    conv2d.zero_grad()
    l.sum().backward()
    # 迭代卷积核
    conv2d.weight.data[:] -= lr * conv2d.weight.grad
    if (i + 1) % 2 == 0:
        print(f'epoch {{i+1}}, loss {{l.sum():.3f}}')

print(conv2d.weight.data.reshape((1, 2)))
"""
BLOCKS["6.2 learning a kernel"] = LEARN_KERNEL.format(start="")
# The same loop from a fixed starting kernel, so its printout can be compared with PyTorch's number by number.
BLOCKS["6.2 learning a kernel from a fixed start"] = LEARN_KERNEL.format(
    start="conv2d.weight.data[:] = torch.tensor([[[[0.5, 0.25]]]])")

BLOCKS["6.2 exercise: diagonal edges (example C)"] = """
import torch
from d2l import torch as d2l

X = torch.eye(8)
K = torch.tensor([[1.0, -1.0]])
print(d2l.corr2d(X, K))
print(d2l.corr2d(X, K.t()))
"""

BLOCKS["6.2 exercise: second derivative kernel"] = """
import torch
from d2l import torch as d2l

x = torch.arange(8, dtype=torch.float32) ** 2
X = x.reshape((1, 8))
print(d2l.corr2d(X, torch.tensor([[1.0, -2.0, 1.0]])))
"""

# ----------------------------------------------------------------------------------------- 6.3 padding/stride
BLOCKS["6.3 padding and stride"] = """
import torch
from torch import nn

# 为了方便起见，我们定义了一个计算卷积层的函数。
def comp_conv2d(conv2d, X):
    X = X.reshape((1, 1) + X.shape)
    Y = conv2d(X)
    # 省略前两个维度：批量大小和通道
    return Y.reshape(Y.shape[2:])

conv2d = nn.Conv2d(1, 1, kernel_size=3, padding=1)
X = torch.rand(size=(8, 8))
print(comp_conv2d(conv2d, X).shape)
conv2d = nn.Conv2d(1, 1, kernel_size=(5, 3), padding=(2, 1))
print(comp_conv2d(conv2d, X).shape)
conv2d = nn.Conv2d(1, 1, kernel_size=3, padding=1, stride=2)
print(comp_conv2d(conv2d, X).shape)
conv2d = nn.Conv2d(1, 1, kernel_size=(3, 5), padding=(0, 1), stride=(3, 4))
print(comp_conv2d(conv2d, X).shape)
"""

BLOCKS["6.3 exercise: example D, valid and same"] = """
import torch
import torch.nn.functional as F
from d2l import torch as d2l

X = torch.tensor([[1, 2, 0, 2], [1, 0, 3, -1], [2, 2, 2, 0], [3, 1, -2, 0]], dtype=torch.float32)
K = torch.tensor([[0, 1, -1], [-1, 0, 1], [1, 0, 1]], dtype=torch.float32)
print(d2l.corr2d(X, K))
print(F.conv2d(X.reshape((1, 1, 4, 4)), K.reshape((1, 1, 3, 3)), padding=1).shape)
"""

# ------------------------------------------------------------------------------------------ 6.4 channels
BLOCKS["6.4 multiple input and output channels"] = """
import torch
from d2l import torch as d2l

def corr2d_multi_in(X, K):
    # 先遍历“X”和“K”的第0个维度（通道维度），再把它们加在一起
    return sum(d2l.corr2d(x, k) for x, k in zip(X, K))

X = torch.tensor([[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]],
               [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]])
K = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 2.0], [3.0, 4.0]]])
print(corr2d_multi_in(X, K))

def corr2d_multi_in_out(X, K):
    # 迭代“K”的第0个维度，每次都对输入“X”执行互相关运算。
    # 最后将所有结果都叠加在一起
    return torch.stack([corr2d_multi_in(X, k) for k in K], 0)

K = torch.stack((K, K + 1, K + 2), 0)
print(K.shape)
print(corr2d_multi_in_out(X, K))
"""

BLOCKS["6.4 1x1 convolution"] = """
import torch
from d2l import torch as d2l

def corr2d_multi_in(X, K):
    return sum(d2l.corr2d(x, k) for x, k in zip(X, K))

def corr2d_multi_in_out(X, K):
    return torch.stack([corr2d_multi_in(X, k) for k in K], 0)

def corr2d_multi_in_out_1x1(X, K):
    c_i, h, w = X.shape
    c_o = K.shape[0]
    X = X.reshape((c_i, h * w))
    K = K.reshape((c_o, c_i))
    # 全连接层中的矩阵乘法
    Y = torch.matmul(K, X)
    return Y.reshape((c_o, h, w))

X = torch.normal(0, 1, (3, 3, 3))
K = torch.normal(0, 1, (2, 3, 1, 1))
Y1 = corr2d_multi_in_out_1x1(X, K)
Y2 = corr2d_multi_in_out(X, K)
assert float(torch.abs(Y1 - Y2).sum()) < 1e-6
print(Y1.shape, float(torch.abs(Y1 - Y2).sum()) < 1e-6)
"""

BLOCKS["6.1 exercise: 1x1 conv is a per-pixel Linear"] = """
import torch
from torch import nn

conv = nn.Conv2d(3, 2, kernel_size=1)
fc = nn.Linear(3, 2)
with torch.no_grad():
    fc.weight.copy_(conv.weight.reshape(2, 3))
    fc.bias.copy_(conv.bias)
X = torch.rand(size=(4, 3, 5, 5))
by_conv = conv(X)
by_fc = fc(X.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
print(by_conv.shape, float(torch.abs(by_conv - by_fc).max()) < 1e-6)
"""

BLOCKS["6.1 exercise: audio frames with a 1-D convolution"] = """
import torch
from torch import nn

frames = torch.rand(size=(2, 39, 100))  # batch, 39 MFCC features, 100 frames
conv = nn.Conv1d(39, 16, kernel_size=5, padding=2)
print(conv(frames).shape)
"""

# --------------------------------------------------------------------------------------------- 6.5 pooling
BLOCKS["6.5 pooling"] = """
import torch
from torch import nn
from d2l import torch as d2l

def pool2d(X, pool_size, mode='max'):
    p_h, p_w = pool_size
    Y = torch.zeros((X.shape[0] - p_h + 1, X.shape[1] - p_w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            if mode == 'max':
                Y[i, j] = X[i: i + p_h, j: j + p_w].max()
            elif mode == 'avg':
                Y[i, j] = X[i: i + p_h, j: j + p_w].mean()
    return Y

X = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
print(pool2d(X, (2, 2)))
print(pool2d(X, (2, 2), 'avg'))

X = torch.arange(16, dtype=torch.float32).reshape((1, 1, 4, 4))
print(X)
pool2d = nn.MaxPool2d(3)
print(pool2d(X))
pool2d = nn.MaxPool2d(3, padding=1, stride=2)
print(pool2d(X))
pool2d = nn.MaxPool2d((2, 3), stride=(2, 3), padding=(0, 1))
print(pool2d(X))
X = torch.cat((X, X + 1), 1)
print(X)
pool2d = nn.MaxPool2d(3, padding=1, stride=2)
print(pool2d(X))
"""

# ----------------------------------------------------------------------------------------------- 6.6 LeNet
LENET = """
import torch
from torch import nn
from d2l import torch as d2l

net = nn.Sequential(
    nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(),
    nn.AvgPool2d(kernel_size=2, stride=2),
    nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
    nn.AvgPool2d(kernel_size=2, stride=2),
    nn.Flatten(),
    nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
    nn.Linear(120, 84), nn.Sigmoid(),
    nn.Linear(84, 10))
"""

BLOCKS["6.6 LeNet layer shapes"] = LENET + """
X = torch.rand(size=(1, 1, 28, 28), dtype=torch.float32)
for layer in net:
    X = layer(X)
    print(layer.__class__.__name__,'output shape: \\t',X.shape)
"""

BLOCKS["6.6 training LeNet"] = LENET + """
batch_size = 256
train_iter, test_iter = d2l.load_data_mnist_slice(batch_size=batch_size)

def evaluate_accuracy_gpu(net, data_iter, device=None): #@save
    \"\"\"使用GPU计算模型在数据集上的精度\"\"\"
    if isinstance(net, nn.Module):
        net.eval()  # 设置为评估模式
        if not device:
            device = next(iter(net.parameters())).device
    # 正确预测的数量，总预测的数量
    metric = d2l.Accumulator(2)
    with torch.no_grad():
        for X, y in data_iter:
            if isinstance(X, list):
                # BERT微调所需的（之后将介绍）
                X = [x.to(device) for x in X]
            else:
                X = X.to(device)
            y = y.to(device)
            metric.add(d2l.accuracy(net(X), y), y.numel())
    return metric[0] / metric[1]

#@save
def train_ch6(net, train_iter, test_iter, num_epochs, lr, device):
    \"\"\"用GPU训练模型(在第六章定义)\"\"\"
    def init_weights(m):
        if type(m) == nn.Linear or type(m) == nn.Conv2d:
            nn.init.xavier_uniform_(m.weight)
    net.apply(init_weights)
    print('training on', device)
    net.to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    loss = nn.CrossEntropyLoss()
    animator = d2l.Animator(xlabel='epoch', xlim=[1, num_epochs],
                            legend=['train loss', 'train acc', 'test acc'])
    timer, num_batches = d2l.Timer(), len(train_iter)
    for epoch in range(num_epochs):
        # 训练损失之和，训练准确率之和，样本数
        metric = d2l.Accumulator(3)
        net.train()
        for i, (X, y) in enumerate(train_iter):
            timer.start()
            optimizer.zero_grad()
            X, y = X.to(device), y.to(device)
            y_hat = net(X)
            l = loss(y_hat, y)
            l.backward()
            optimizer.step()
            with torch.no_grad():
                metric.add(l * X.shape[0], d2l.accuracy(y_hat, y), X.shape[0])
            timer.stop()
            train_l = metric[0] / metric[2]
            train_acc = metric[1] / metric[2]
            if (i + 1) % (num_batches // 5) == 0 or i == num_batches - 1:
                animator.add(epoch + (i + 1) / num_batches,
                             (train_l, train_acc, None))
        test_acc = evaluate_accuracy_gpu(net, test_iter)
        animator.add(epoch + 1, (None, None, test_acc))
    print(f'loss {train_l:.3f}, train acc {train_acc:.3f}, '
          f'test acc {test_acc:.3f}')
    print(f'{metric[2] * num_epochs / timer.sum():.1f} examples/sec '
          f'on {str(device)}')

lr, num_epochs = 0.9, 2
train_ch6(net, train_iter, test_iter, num_epochs, lr, d2l.try_gpu())
"""

DETERMINISTIC = [
    "6.2 corr2d", "6.2 Conv2D class and its backward", "6.2 edge detection", "6.2 learning a kernel from a fixed start",
    "6.2 exercise: diagonal edges (example C)", "6.2 exercise: second derivative kernel", "6.3 padding and stride",
    "6.3 exercise: example D, valid and same", "6.4 multiple input and output channels", "6.4 1x1 convolution",
    "6.1 exercise: 1x1 conv is a per-pixel Linear", "6.1 exercise: audio frames with a 1-D convolution",
    "6.5 pooling", "6.6 LeNet layer shapes",
]
