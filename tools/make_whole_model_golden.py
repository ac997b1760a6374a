#!/usr/bin/python3
"""Generate tests/data/whole/: tiny whole-model checkpoints, inputs and
PyTorch goldens (issue 11).

Usage (needs torch and numpy): python3 tools/make_whole_model_golden.py tests/data/whole

Plain float64 PyTorch re-implementations written from the models'
definitions (neither timm nor transformers is imported):
  * timm VisionTransformer: PatchEmbed (Conv2d stride = kernel), cls_token
    prepended, pos_embed added, pre-norm blocks (eps 1e-6), then
    forward_head: norm (Identity when fc_norm is used), pool ('token':
    x[:, 0]; 'avg': x[:, 1:].mean(1)), fc_norm, head.
  * HF ViTForImageClassification: ViTEmbeddings (same), ViTLayer
    (layernorm_before / layernorm_after, pre-norm, eps 1e-12), vit.layernorm,
    classifier(sequence_output[:, 0]).
  * HF BertForSequenceClassification: BertEmbeddings (word + position
    (0 … N−1) + token type, LayerNorm eps 1e-12), post-norm BertLayer with
    the extended attention mask, BertPooler tanh(dense(h[:, 0])), classifier;
    sentence-transformers mean pooling (sum(h·m) / clamp(sum(m), 1e-9)) and
    F.normalize.
  * CrossModalReparamLinear on the classifier: W + λ·W_aux (the paper), and
    the seed's variant adding λ·b_aux.
Inputs are stored as float32 .npy (ids and masks are small integers, exact
in f32; the test converts them to int64/int32). Expected outputs are the
float64 forward rounded once to float32.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_models import (Gen, bert_block, bert_embeddings, bert_names,  # noqa: E402
                           block_params, hf_vit_block, hf_vit_names, layer_norm, lin,
                           patch_embed, save_npy, save_st, sub, timm_block, timm_names)

D, HEADS, DEPTH, HID = 16, 2, 2, 64
gen = Gen(20240511)
rand = gen.rand
TIMM, HFV, BERT = timm_names(D, HID), hf_vit_names(D, HID), bert_names(D, HID)


def ln_params():
    return gen.ln_params(D)


def main(out):
    C, IMG, P, CLASSES = 3, 8, 4, 3
    G = (IMG // P) ** 2
    pixels = rand(2, C, IMG, IMG, scale=1.0)
    save_npy(f'{out}/pixels.npy', pixels)

    # timm, token pooling (norm, head) and avg pooling (fc_norm, head)
    for kind in ('token', 'avg'):
        t = {'patch_embed.proj.weight': rand(D, C, P, P), 'patch_embed.proj.bias': rand(D),
             'cls_token': rand(1, 1, D), 'pos_embed': rand(1, G + 1, D),
             'head.weight': rand(CLASSES, D), 'head.bias': rand(CLASSES)}
        blocks = [block_params(gen, TIMM, D) for _ in range(DEPTH)]
        for i, bp in enumerate(blocks):
            t.update({f'blocks.{i}.{k}': v for k, v in bp.items()})
        norm = 'norm' if kind == 'token' else 'fc_norm'
        t[norm + '.weight'], t[norm + '.bias'] = ln_params()
        x = patch_embed(t['patch_embed.proj.weight'], t['patch_embed.proj.bias'], t['cls_token'],
                        t['pos_embed'], pixels)
        for bp in blocks:
            x = timm_block(bp, x, HEADS)
        if kind == 'token':
            x = layer_norm(x, t['norm.weight'], t['norm.bias'], 1e-6)
            pooled = x[:, 0]
        else:
            pooled = layer_norm(x[:, 1:].mean(1), t['fc_norm.weight'], t['fc_norm.bias'], 1e-6)
        save_st(f'{out}/timm_{kind}.safetensors', t)
        save_npy(f'{out}/timm_{kind}_hidden.npy', x)
        save_npy(f'{out}/timm_{kind}_pooled.npy', pooled)
        save_npy(f'{out}/timm_{kind}_logits.npy', lin(t, 'head', pooled))

    # HF ViTForImageClassification
    t = {'vit.embeddings.patch_embeddings.projection.weight': rand(D, C, P, P),
         'vit.embeddings.patch_embeddings.projection.bias': rand(D),
         'vit.embeddings.cls_token': rand(1, 1, D), 'vit.embeddings.position_embeddings':
         rand(1, G + 1, D), 'classifier.weight': rand(CLASSES, D), 'classifier.bias': rand(CLASSES)}
    t['vit.layernorm.weight'], t['vit.layernorm.bias'] = ln_params()
    blocks = [block_params(gen, HFV, D) for _ in range(DEPTH)]
    for i, bp in enumerate(blocks):
        t.update({f'vit.encoder.layer.{i}.{k}': v for k, v in bp.items()})
    e = 'vit.embeddings.'
    x = patch_embed(t[e + 'patch_embeddings.projection.weight'],
                    t[e + 'patch_embeddings.projection.bias'], t[e + 'cls_token'],
                    t[e + 'position_embeddings'], pixels)
    for bp in blocks:
        x = hf_vit_block(bp, x, HEADS)
    x = layer_norm(x, t['vit.layernorm.weight'], t['vit.layernorm.bias'], 1e-12)
    save_st(f'{out}/hf_vit.safetensors', t)
    save_npy(f'{out}/hf_vit_logits.npy', lin(t, 'classifier', x[:, 0]))

    # BERT (bert. prefix, pooler, classifier, an I64 position_ids buffer) and
    # an aux BERT whose classifier becomes the pathway.
    V, NPOS, NTYPES, N = 20, 8, 2, 6
    ids = torch.tensor([[2, 5, 7, 11, 13, 3], [2, 19, 3, 0, 0, 0]])
    types = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.float64)
    for name, a in (('ids', ids), ('types', types), ('mask', mask)):
        save_npy(f'{out}/bert_{name}.npy', a)

    def bert(prefix):
        t = {prefix + 'embeddings.word_embeddings.weight': rand(V, D),
             prefix + 'embeddings.position_embeddings.weight': rand(NPOS, D),
             prefix + 'embeddings.token_type_embeddings.weight': rand(NTYPES, D),
             prefix + 'embeddings.position_ids': torch.arange(NPOS).reshape(1, NPOS),
             prefix + 'pooler.dense.weight': rand(D, D), prefix + 'pooler.dense.bias': rand(D),
             'classifier.weight': rand(CLASSES, D), 'classifier.bias': rand(CLASSES)}
        w, b = ln_params()
        t[prefix + 'embeddings.LayerNorm.weight'], t[prefix + 'embeddings.LayerNorm.bias'] = w, b
        for i in range(DEPTH):
            t.update({f'{prefix}encoder.layer.{i}.{k}': v
                      for k, v in block_params(gen, BERT, D).items()})
        return t

    def bert_forward(t, prefix, head_w, head_b):
        x = bert_embeddings(t, prefix, ids, types)
        for i in range(DEPTH):
            x = bert_block(sub(t, f'{prefix}encoder.layer.{i}.'), x, mask, HEADS)
        pooled = torch.tanh(lin(t, prefix + 'pooler.dense', x[:, 0]))
        mean = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
        return x, pooled, mean, F.linear(pooled, head_w, head_b)

    t, aux = bert('bert.'), bert('bert.')
    x, pooled, mean, logits = bert_forward(t, 'bert.', t['classifier.weight'], t['classifier.bias'])
    save_st(f'{out}/bert.safetensors', t)
    save_st(f'{out}/bert_aux.safetensors', aux)
    save_npy(f'{out}/bert_hidden.npy', x)
    save_npy(f'{out}/bert_pooled.npy', pooled)
    save_npy(f'{out}/bert_mean.npy', F.normalize(mean, p=2, dim=1))
    save_npy(f'{out}/bert_logits.npy', logits)
    lam = float(np.float32(0.3))
    w_eff = t['classifier.weight'] + lam * aux['classifier.weight']
    _, _, _, lp = bert_forward(t, 'bert.', w_eff, t['classifier.bias'])
    save_npy(f'{out}/bert_logits_head_pathway.npy', lp)
    _, _, _, lpb = bert_forward(t, 'bert.', w_eff, t['classifier.bias'] + lam * aux['classifier.bias'])
    save_npy(f'{out}/bert_logits_head_aux_bias.npy', lpb)

    # A checkpoint with embeddings but no blocks.
    save_st(f'{out}/no_blocks.safetensors',
            {k: v for k, v in t.items() if 'encoder.layer' not in k})


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else 'tests/data/whole')
