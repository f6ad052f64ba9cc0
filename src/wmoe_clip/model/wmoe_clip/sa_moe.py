"""SA-MoE — semantic-aware mixture of experts (docs/METHOD.md §3, paper eq. 8).

Adapters (one linear map per layer, then global average pooling over the patches) give the context
``c ∈ R^{L·d_a}``; the router keeps the top-k of ``softmax(W_r c)`` and renormalises their weights;
``F~ = Σ_{i ∈ top-k} w_i E_i(c)`` is added to the class token by the caller (``g' = g + F~``). With
``zero_init`` each expert's output layer starts at zero, so ``g' = g`` at initialisation (docs/METHOD.md §6).
"""

from __future__ import annotations

import torch
from torch import nn

from .zero_init import zero_


def top_k_routing(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Router probabilities (B,E), the kept experts (B,k) and their renormalised weights (B,k)."""
    probs = torch.softmax(logits, dim=-1)
    top, index = probs.topk(k, dim=-1)
    return probs, index, top / top.sum(dim=-1, keepdim=True)


class SAMoE(nn.Module):
    def __init__(self, num_layers: int, dim: int, adapter_dim: int, num_experts: int, top_k: int, hidden: int,
                 zero_init: bool = False):
        super().__init__()
        self.adapters = nn.ModuleList(nn.Linear(dim, adapter_dim) for _ in range(num_layers))
        context = num_layers * adapter_dim
        self.router = nn.Linear(context, num_experts)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(context, hidden), nn.GELU(), nn.Linear(hidden, dim)) for _ in range(num_experts)
        )
        if zero_init:
            for expert in self.experts:
                zero_(expert[-1])
        self.top_k = top_k

    def forward(self, patches: torch.Tensor) -> dict[str, torch.Tensor]:
        """``patches`` (B,L,N,D) → ``delta`` (B,D) and the routing (probs, expert index and weights)."""
        # Linear then mean equals mean then linear; pooling first is L·N/1 times cheaper.
        pooled = patches.mean(dim=2)
        context = torch.cat([adapter(pooled[:, i]) for i, adapter in enumerate(self.adapters)], dim=-1)
        probs, index, weights = top_k_routing(self.router(context), self.top_k)
        # All experts on the (tiny) context vector, then a sparse mixture: only the top-k get weight.
        outputs = torch.stack([expert(context) for expert in self.experts], dim=1)
        chosen = outputs.gather(1, index[:, :, None].expand(-1, -1, outputs.shape[-1]))
        delta = (weights.unsqueeze(-1).to(chosen.dtype) * chosen).sum(dim=1)
        return {"delta": delta, "router_probs": probs, "expert_index": index, "expert_weights": weights}
