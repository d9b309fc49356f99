"""The few d2l helpers chapter 6 uses (``from d2l import torch as d2l``), as d2l writes them (see torch.py)."""
