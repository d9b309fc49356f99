"""Look inside LeNet: layer table, autograd graph, gradients, hooks (no MNIST needed: random images).

    python examples/inspect_lenet.py [--variant d2l|modern] [--batch 8] [--dot lenet.dot] [--png first.png]

1. tc.summary: output shape, parameters and multiply-adds of every layer (61,706 parameters).
2. tc.print_graph: every op from the loss back to the parameters and the input.
3. Forward hooks print each layer's output statistics; full backward hooks print the norms of the gradients
   flowing into and out of each layer; a tensor hook shows dL/d(conv1 output).
4. tinyconv.visualize.grad_norms: the gradient norm of every parameter (what ``tinyconv train --log-grads`` logs).
   With the sigmoid ('d2l') variant the first layers get much smaller gradients than the last: the vanishing
   gradients that make that network slow to train.
"""
import argparse

import numpy as np

import tinyconv as tc
from tinyconv import functional as F
from tinyconv import nn
from tinyconv.visualize import grad_norms


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="d2l", choices=["d2l", "modern"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dot", default=None, help="also write the graph as Graphviz DOT to this file")
    parser.add_argument("--png", default=None, help="also draw conv1's kernels and feature maps (needs matplotlib)")
    args = parser.parse_args(argv)

    tc.manual_seed(args.seed)
    model = nn.models.LeNet(args.variant)
    images = tc.rand(args.batch, 1, 28, 28)
    labels = np.random.default_rng(args.seed).integers(0, 10, size=args.batch)

    print("== 1. summary")
    tc.summary(model, (1, 1, 28, 28))

    print("\n== 2. the graph of the loss")
    loss = F.cross_entropy(model(images), labels)
    params = dict(model.named_parameters())
    tc.print_graph(loss, params={**params, "images": images})
    if args.dot:
        with open(args.dot, "w") as f:
            f.write(tc.to_dot(loss, params={**params, "images": images}))
        print(f"(DOT written to {args.dot}; render with: dot -Tpng {args.dot} -o graph.png)")

    print("\n== 3. hooks")
    handles = []
    for name, layer in model.named_children():
        def forward_hook(module, inputs, output, name=name):
            out = output.numpy()
            print(f"forward  {name:8s} {str(tuple(output.shape)):18s} mean {out.mean():+.4f}  std {out.std():.4f}")

        def backward_hook(module, grad_input, grad_output, name=name):
            gin = "None (the input needs no gradient)" if grad_input[0] is None else \
                f"{np.linalg.norm(grad_input[0].numpy()):.3e}"
            print(f"backward {name:8s} |dL/d output| {np.linalg.norm(grad_output[0].numpy()):.3e}  |dL/d input| {gin}")

        handles.append(layer.register_forward_hook(forward_hook))
        handles.append(layer.register_full_backward_hook(backward_hook))
    model.zero_grad()
    out = model.conv1(images)
    out.register_hook(lambda g: print(f"tensor hook: dL/d(conv1 output) has shape {tuple(g.shape)}, "
                                      f"norm {np.linalg.norm(g.numpy()):.3e}"))
    for _name, layer in list(model.named_children())[1:]:
        out = layer(out)
    loss = F.cross_entropy(out, labels)
    print(f"loss {loss.item():.4f}")
    loss.backward()
    for h in handles:
        h.remove()

    print("\n== 4. gradient norms per parameter")
    norms = grad_norms(model)
    for name, value in norms.items():
        print(f"{name:12s} {value:.3e}")
    first, last = norms["conv1.weight"], norms["fc3.weight"]
    print(f"conv1.weight / fc3.weight: {first / last:.3g}")

    if args.png:
        from tinyconv.visualize import plot_first_conv

        print("picture written to", plot_first_conv(model, images[0], args.png))


if __name__ == "__main__":
    main()
