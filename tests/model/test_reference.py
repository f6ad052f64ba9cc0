"""The whole model against docs/METHOD.md written out by hand: CTDS, WCMA steps 1–5, SA-MoE, scores, losses.

The reference below reads the learnable weights but none of the model's own forward code: it applies
the equations of docs/METHOD.md with plain tensor algebra (the Haar DWT straight from pytorch_wavelets in the
configured border mode, the text encoder through the backbone, which test_model.py checks against
open_clip).
"""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_wavelets import DWTForward

from wmoe_clip.config import load_config
from wmoe_clip.model import build_model
from wmoe_clip.model.wmoe_clip.ctds import CTDS


def _linear(layer, x):
    return x @ layer.weight.T + layer.bias


def _unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def _prompts(model, shift):
    """Token embeddings of "a photo of a good/damaged [V1+P(z)][V2+P(z)]." built from the tokenizer."""
    import open_clip

    backbone = model.backbone
    ids = open_clip.tokenize(["a photo of a good x x.", "a photo of a damaged x x."])
    base = backbone.clip.token_embedding(ids)  # (2,77,W)
    rows = []
    for b in range(shift.shape[0]):
        emb = base.clone()
        emb[:, 6:8] = model.prompts.context + shift[b]
        rows.append(emb)
    emb = torch.cat(rows)  # (B·2,77,W)
    eot = ids.argmax(-1).repeat(shift.shape[0])
    text = backbone.encode_text(emb, eot, truncate=False)
    return _unit(text.reshape(shift.shape[0], 2, -1))


def _reference(model, feats):
    m = model.cfg.model.wmoe_clip
    tau = m.temperature
    g = _unit(feats.global_token.float())
    patches = _unit(feats.patch_tokens.float())
    b, n_layers = patches.shape[:2]
    gh, gw = model.backbone.grid

    # CTDS at evaluation: z = mu, P(z) shifts every learnable slot.
    ctds = model.ctds
    mu = _linear(ctds.to_mu, g)
    logvar = _linear(ctds.to_logvar, g)
    g_hat = _linear(ctds.decoder[2], torch.relu(_linear(ctds.decoder[0], mu)))
    text = _prompts(model, _linear(ctds.to_prompt, mu))  # T (B,2,D)

    dwt = DWTForward(J=1, wave="haar", mode=m.wcma.dwt_mode)
    layer_maps = []
    for layer in range(n_layers):
        wl = model.wcma.layers[layer]
        f = patches[:, layer]  # (B,N,D)
        # 1. Haar DWT of the D×h×w map; X_H = X_LH + X_HL + X_HH.
        low, (high,) = dwt(f.transpose(1, 2).reshape(b, -1, gh, gw))
        x_h = high[:, :, 0] + high[:, :, 1] + high[:, :, 2]
        # 2. U, global and local channel weights, A.
        u = low + x_h
        fc1, fc2 = wl.enhance.global_fc[0], wl.enhance.global_fc[2]
        a_g = _linear(fc2, torch.relu(_linear(fc1, u.mean(dim=(2, 3)))))
        conv = wl.enhance.local_conv
        a_loc = torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], u) + conv.bias[None, :, None, None]
        a = torch.sigmoid(a_g[:, :, None, None] + a_loc)
        # 3. F_w = X_L + A ⊙ X_H as tokens.
        f_w = (low + a * x_h).flatten(2).transpose(1, 2)
        # 4. Single-head residual cross-attention, text as queries.
        cross = wl.cross
        q, k, v = _linear(cross.q, text), _linear(cross.k, f_w), _linear(cross.v, f_w)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
        refined = _unit(text + _linear(cross.o, att @ v))
        # 5. M_l = softmax_c(cos(F_l, T~_c)/τ), abnormal channel, bilinear to the input size.
        cos = torch.einsum("bnd,bcd->bnc", f, refined)
        prob = torch.softmax(cos / tau, dim=-1)[..., 1].reshape(b, 1, gh, gw)
        size = (model.cfg.model.image_size,) * 2
        layer_maps.append(F.interpolate(prob, size=size, mode="bilinear", align_corners=False)[:, 0])
    layer_maps = torch.stack(layer_maps, dim=1)
    anomaly_map = layer_maps.mean(dim=1)

    # SA-MoE: adapters + GAP, router softmax, top-k renormalised, weighted experts; g' = g + F~.
    moe = model.sa_moe
    context = torch.cat([_linear(moe.adapters[i], patches[:, i]).mean(dim=1) for i in range(n_layers)], dim=-1)
    r = torch.softmax(_linear(moe.router, context), dim=-1)
    delta = torch.zeros_like(g)
    for i in range(b):
        top = torch.argsort(r[i], descending=True)[: m.sa_moe.top_k]
        weights = r[i, top] / r[i, top].sum()
        for w, e in zip(weights, top):
            expert = moe.experts[int(e)]
            delta[i] += w * _linear(expert[2], F.gelu(_linear(expert[0], context[i])))
    g_prime = _unit(g + delta)
    s_g = torch.softmax(torch.einsum("bd,bcd->bc", g_prime, text) / tau, dim=-1)[:, 1]
    image_score = m.alpha * s_g + (1 - m.alpha) * anomaly_map.flatten(1).max(dim=1).values
    return {"layer_maps": layer_maps, "anomaly_map": anomaly_map, "global_score": s_g, "image_score": image_score,
            "mu": mu, "logvar": logvar, "g": g, "g_hat": g_hat}


@pytest.fixture
def trained_like_model():
    """The tiny full model with every learnable weight moved away from its initialisation."""
    torch.manual_seed(4)
    model = build_model(load_config("tiny", "full")).eval()
    with torch.no_grad():
        for p in model.learnable_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def test_forward_equals_the_method_written_out_by_hand(trained_like_model, images):
    model = trained_like_model
    with torch.no_grad():
        feats = model.encode_image(images)
        out = model.forward_features(feats)
        ref = _reference(model, feats)
    for name in ("layer_maps", "anomaly_map", "global_score", "image_score"):
        torch.testing.assert_close(getattr(out, name), ref[name], atol=2e-5, rtol=1e-4, msg=name)
    for name in ("mu", "logvar", "g", "g_hat"):
        torch.testing.assert_close(out.aux[name], ref[name], atol=2e-5, rtol=1e-4, msg=name)
    # The maps are not trivially constant, or the comparison would prove little.
    assert float(out.anomaly_map.std()) > 1e-3 and float(out.global_score.std()) > 1e-4


def test_loss_total_is_the_weighted_sum_of_the_method_terms(trained_like_model, images, labels, masks):
    model = trained_like_model
    cfg = model.cfg
    s = cfg.model.wmoe_clip
    weights = dataclasses.replace(s.loss, global_weight=0.7, local_weight=1.3, kl_weight=0.2, rec_weight=0.4)
    model.cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, wmoe_clip=dataclasses.replace(
        s, loss=weights)))
    with torch.no_grad():
        out = model(images)
        terms = model.loss(out, labels, masks)
    y = labels.double().numpy()
    s = out.global_score.double().numpy()
    bce = -np.mean(y * np.log(s) + (1 - y) * np.log(1 - s))
    maps = out.layer_maps.double().numpy()
    t = masks.double().numpy()
    focal = dice = 0.0
    for layer in range(maps.shape[1]):
        p = np.clip(maps[:, layer], 1e-6, 1 - 1e-6)
        pt = np.where(t == 1, p, 1 - p)
        focal += np.mean(-((1 - pt) ** 2) * np.log(pt))
        for a, b in ((maps[:, layer], t), (1 - maps[:, layer], 1 - t)):
            inter = (a * b).reshape(len(a), -1).sum(1)
            dice += 1 - np.mean((2 * inter + 1) / (a.reshape(len(a), -1).sum(1) + b.reshape(len(b), -1).sum(1) + 1))
    mu, logvar = out.aux["mu"].double().numpy(), out.aux["logvar"].double().numpy()
    kl = -0.5 * np.mean(np.sum(1 + logvar - mu**2 - np.exp(logvar), axis=1))
    rec = np.mean(np.sum((out.aux["g"].double().numpy() - out.aux["g_hat"].double().numpy()) ** 2, axis=1))
    expected = {"global": bce, "focal": focal, "dice": dice, "kl": kl, "rec": rec}
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, rel=1e-4, abs=1e-6), name
    total = 0.7 * bce + 1.3 * (focal + dice) + 0.2 * kl + 0.4 * rec
    assert terms["total"].item() == pytest.approx(total, rel=1e-4)


def test_ctds_samples_with_the_reparameterisation_while_training_and_uses_mu_at_evaluation():
    torch.manual_seed(0)
    ctds = CTDS(dim=6, latent_dim=4, hidden=5, text_width=3)
    g = torch.randn(5, 6)
    torch.manual_seed(9)
    out = ctds.train()(g)
    torch.manual_seed(9)
    eps = torch.randn(5, 4)
    mu, logvar = _linear(ctds.to_mu, g), _linear(ctds.to_logvar, g)
    torch.testing.assert_close(out["z"], mu + torch.sqrt(torch.exp(logvar)) * eps)
    torch.testing.assert_close(out["g_hat"], _linear(ctds.decoder[2], torch.relu(_linear(ctds.decoder[0], out["z"]))))
    torch.testing.assert_close(out["prompt_shift"], _linear(ctds.to_prompt, out["z"]))
    ctds.eval()
    torch.testing.assert_close(ctds(g)["z"], mu)
    # P is the identity when the latent already has the text width.
    assert isinstance(CTDS(dim=6, latent_dim=3, hidden=5, text_width=3).to_prompt, torch.nn.Identity)
