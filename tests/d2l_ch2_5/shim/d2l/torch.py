"""The d2l helpers that chapters 2-5 call as ``d2l.xxx``, for ``torch`` being PyTorch or tinyconv (whichever the
runner put under that name). The functions are the book's own ``#@save`` definitions from those chapters; what
needs a screen or the network is replaced: ``plt`` is a stand-in that accepts every pyplot call and draws nothing,
and ``load_data_fashion_mnist`` serves a small synthetic stand-in for Fashion-MNIST (see ``synthetic_images``)."""
import time

import numpy as np
import torch
from torch.utils import data


# --------------------------------------------------------------------------------------------- plotting
class _Canvas:
    """Any pyplot object (figure, axes, axis, line ...): every attribute is another canvas, every call returns
    one, so the book's plotting code runs and draws nothing."""

    def __init__(self):
        self.rcParams = {}

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Canvas()

    def __call__(self, *args, **kwargs):
        return _Canvas()

    def subplots(self, nrows=1, ncols=1, **kwargs):
        if nrows * ncols == 1:
            return _Canvas(), _Canvas()
        return _Canvas(), np.array([[_Canvas() for _ in range(ncols)] for _ in range(nrows)])


plt = _Canvas()


def use_svg_display():  #@save
    """使用svg格式在Jupyter中显示绘图"""


def set_figsize(figsize=(3.5, 2.5)):  #@save
    """设置matplotlib的图表大小"""
    use_svg_display()
    plt.rcParams['figure.figsize'] = figsize


def set_axes(axes, xlabel, ylabel, xlim, ylim, xscale, yscale, legend):  #@save
    """设置matplotlib的轴"""


def plot(X, Y=None, xlabel=None, ylabel=None, legend=None, xlim=None, ylim=None, xscale='linear',
         yscale='linear', fmts=('-', 'm--', 'g-.', 'r:'), figsize=(3.5, 2.5), axes=None):  #@save
    """绘制数据点: the points are converted to arrays, as matplotlib would, and dropped."""
    for series in (X, Y):
        for item in (series if isinstance(series, list) else [series]):
            if item is not None:
                np.asarray(item)


class Animator:  #@save
    """在动画中绘制数据: the points are kept, nothing is drawn."""
    def __init__(self, *args, **kwargs):
        self.points = []

    def add(self, x, y):
        self.points.append((x, y))


def show_images(imgs, num_rows, num_cols, titles=None, scale=1.5):  #@save
    """绘制图像列表: nothing is drawn."""
    return plt.subplots(num_rows, num_cols)[1]


# --------------------------------------------------------------------------------------- tensor aliases
ones = torch.ones
zeros = torch.zeros
tensor = torch.tensor
arange = torch.arange
exp = torch.exp
log = torch.log
normal = torch.normal
matmul = torch.matmul
float32 = torch.float32
numpy = lambda x, *args, **kwargs: x.detach().numpy(*args, **kwargs)  # noqa: E731
size = lambda x, *args, **kwargs: x.numel(*args, **kwargs)  # noqa: E731
reshape = lambda x, *args, **kwargs: x.reshape(*args, **kwargs)  # noqa: E731
reduce_sum = lambda x, *args, **kwargs: x.sum(*args, **kwargs)  # noqa: E731
argmax = lambda x, *args, **kwargs: x.argmax(*args, **kwargs)  # noqa: E731
astype = lambda x, *args, **kwargs: x.type(*args, **kwargs)  # noqa: E731


class Timer:  #@save
    """记录多次运行时间"""
    def __init__(self):
        self.times = []
        self.start()

    def start(self):
        self.tik = time.time()

    def stop(self):
        self.times.append(time.time() - self.tik)
        return self.times[-1]

    def avg(self):
        return sum(self.times) / len(self.times)

    def sum(self):
        return sum(self.times)

    def cumsum(self):
        return np.array(self.times).cumsum().tolist()


# ------------------------------------------------------------------------------------ chapter 3's helpers
def synthetic_data(w, b, num_examples):  #@save
    """生成y=Xw+b+噪声"""
    X = normal(0, 1, (num_examples, len(w)))
    y = matmul(X, w) + b
    y += normal(0, 0.01, y.shape)
    return X, reshape(y, (-1, 1))


def linreg(X, w, b):  #@save
    """线性回归模型"""
    return matmul(X, w) + b


def squared_loss(y_hat, y):  #@save
    """均方损失"""
    return (y_hat - reshape(y, y_hat.shape)) ** 2 / 2


def sgd(params, lr, batch_size):  #@save
    """小批量随机梯度下降"""
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad / batch_size
            param.grad.zero_()


def load_array(data_arrays, batch_size, is_train=True):  #@save
    """构造一个PyTorch数据迭代器"""
    dataset = data.TensorDataset(*data_arrays)
    return data.DataLoader(dataset, batch_size, shuffle=is_train)


def get_fashion_mnist_labels(labels):  #@save
    """返回Fashion-MNIST数据集的文本标签"""
    text_labels = ['t-shirt', 'trouser', 'pullover', 'dress', 'coat',
                   'sandal', 'shirt', 'sneaker', 'bag', 'ankle boot']
    return [text_labels[int(i)] for i in labels]


def synthetic_images(n, seed):
    """``n`` 28x28 images in [0, 1] of ten classes and their int64 labels, from NumPy's generator ``seed``: each
    class is a fixed random pattern of bright pixels, each image its class's pattern dimmed or brightened at
    random, with noise. As easy as Fashion-MNIST is for a linear model, and the same in every library."""
    patterns = np.random.default_rng(2024).random((10, 28, 28)) < 0.35
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = patterns[labels] * rng.uniform(0.6, 1.0, (n, 1, 1)) + rng.normal(0.0, 0.15, (n, 28, 28))
    return np.clip(images, 0, 1).astype(np.float32)[:, None], labels.astype(np.int64)


def load_data_fashion_mnist(batch_size, resize=None, n_train=1024, n_test=256):  #@save
    """Stands in for the book's loader (no download): synthetic Fashion-MNIST-shaped batches, (N, 1, 28, 28)
    float32 in [0, 1] as ToTensor() gives, with the book's shuffling."""
    if resize is not None:
        raise NotImplementedError("the chapter 2-5 stand-in serves 28x28 images only")
    train = data.TensorDataset(*(torch.tensor(a) for a in synthetic_images(n_train, seed=0)))
    test = data.TensorDataset(*(torch.tensor(a) for a in synthetic_images(n_test, seed=1)))
    return (data.DataLoader(train, batch_size, shuffle=True),
            data.DataLoader(test, batch_size, shuffle=False))


class Accumulator:  #@save
    """在n个变量上累加"""
    def __init__(self, n):
        self.data = [0.0] * n

    def add(self, *args):
        self.data = [a + float(b) for a, b in zip(self.data, args)]

    def reset(self):
        self.data = [0.0] * len(self.data)

    def __getitem__(self, idx):
        return self.data[idx]


def accuracy(y_hat, y):  #@save
    """计算预测正确的数量"""
    if len(y_hat.shape) > 1 and y_hat.shape[1] > 1:
        y_hat = argmax(y_hat, axis=1)
    cmp = astype(y_hat, y.dtype) == y
    return float(reduce_sum(astype(cmp, y.dtype)))


def evaluate_accuracy(net, data_iter):  #@save
    """计算在指定数据集上模型的精度"""
    if isinstance(net, torch.nn.Module):
        net.eval()
    metric = Accumulator(2)
    with torch.no_grad():
        for X, y in data_iter:
            metric.add(accuracy(net(X), y), size(y))
    return metric[0] / metric[1]


def train_epoch_ch3(net, train_iter, loss, updater):  #@save
    """训练模型一个迭代周期（定义见第3章）"""
    if isinstance(net, torch.nn.Module):
        net.train()
    metric = Accumulator(3)
    for X, y in train_iter:
        y_hat = net(X)
        l = loss(y_hat, y)  # noqa: E741
        if isinstance(updater, torch.optim.Optimizer):
            updater.zero_grad()
            l.mean().backward()
            updater.step()
        else:
            l.sum().backward()
            updater(X.shape[0])
        metric.add(float(l.sum()), accuracy(y_hat, y), y.numel())
    return metric[0] / metric[2], metric[1] / metric[2]


def train_ch3(net, train_iter, test_iter, loss, num_epochs, updater):  #@save
    """训练模型（定义见第3章）: the book's asserts on the final losses and accuracies included."""
    animator = Animator(xlabel='epoch', xlim=[1, num_epochs], ylim=[0.3, 0.9],
                        legend=['train loss', 'train acc', 'test acc'])
    for epoch in range(num_epochs):
        train_metrics = train_epoch_ch3(net, train_iter, loss, updater)
        test_acc = evaluate_accuracy(net, test_iter)
        animator.add(epoch + 1, train_metrics + (test_acc,))
    train_loss, train_acc = train_metrics
    assert train_loss < 0.5, train_loss
    assert train_acc <= 1 and train_acc > 0.7, train_acc
    assert test_acc <= 1 and test_acc > 0.7, test_acc


def predict_ch3(net, test_iter, n=6):  #@save
    """预测标签（定义见第3章）"""
    for X, y in test_iter:  # noqa: B007 (the book keeps the first batch)
        break
    trues = get_fashion_mnist_labels(y)
    preds = get_fashion_mnist_labels(argmax(net(X), axis=1))
    titles = [true + '\n' + pred for true, pred in zip(trues, preds)]
    show_images(reshape(X[0:n], (n, 28, 28)), 1, n, titles=titles[0:n])


# ------------------------------------------------------------------------------------ chapter 4's helpers
def evaluate_loss(net, data_iter, loss):  #@save
    """评估给定数据集上模型的损失"""
    metric = Accumulator(2)
    for X, y in data_iter:
        out = net(X)
        y = reshape(y, out.shape)
        l = loss(out, y)  # noqa: E741
        metric.add(reduce_sum(l), size(l))
    return metric[0] / metric[1]


def try_gpu(i=0):  #@save
    """如果存在，则返回gpu(i)，否则返回cpu()"""
    if torch.cuda.device_count() >= i + 1:
        return torch.device(f'cuda:{i}')
    return torch.device('cpu')

