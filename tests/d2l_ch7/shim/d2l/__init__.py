"""The d2l helpers chapter 7 uses (``from d2l import torch as d2l``), written as d2l writes them (see torch.py)."""
