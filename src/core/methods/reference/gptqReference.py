# Reference check for issue #6 (not part of the extension; needs PyTorch + transformers + a CUDA GPU):
# RTN vs GPTQ on tiny-llama with IST-DASLab gptq.py's `fasterquant` and `llama_sequential` (true-sequential)
# re-implemented line for line, on the same token ids, windows (256 tokens from token 0, no BOS) and
# perplexity protocol as quantlens. Inputs, in the folder of this script (HERE):
#   tiny-llama/            a copy of ../shared/models/tiny-llama
#   calib.i32, eval.i32    token ids of ../shared/data/{calib,eval}.txt as little-endian int32, made with
#                          quantlens' own tokenizer (src/core/model/loadModel.ts: loadModel(dir).tokenizer.encode(text))
# Usage: python3 gptqReference.py [calibration windows, default 128]. Figures: src/core/methods/README.md.
import math, sys, time, json, os
import numpy as np
import torch
import torch.nn as nn
from transformers import LlamaForCausalLM

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
DEV = torch.device('cuda')
HERE = os.path.dirname(os.path.abspath(__file__))
CTX = 256

def windows(name, n):
    ids = np.fromfile(os.path.join(HERE, f'{name}.i32'), dtype=np.int32)
    assert len(ids) >= n * CTX, (name, len(ids))
    return torch.from_numpy(ids[: n * CTX].astype(np.int64)).view(n, CTX)

def load():
    m = LlamaForCausalLM.from_pretrained(os.path.join(HERE, 'tiny-llama'), torch_dtype=torch.float32, attn_implementation='eager')
    m.eval()
    return m.to(DEV)

@torch.no_grad()
def ppl(model, ev):
    nll = []
    for i in range(0, ev.shape[0], 16):
        x = ev[i:i + 16].to(DEV)
        logits = model(x, use_cache=False).logits.float()
        lp = torch.log_softmax(logits[:, :-1], dim=-1)
        tok = x[:, 1:]
        nll.append(-(lp.gather(-1, tok.unsqueeze(-1)).squeeze(-1)).mean(dim=1))
    return math.exp(torch.cat(nll).mean().item())

def rtn_(w, bits, group):
    maxq = 2 ** bits - 1
    r, c = w.shape
    g = w.view(r, c // group, group)
    lo = g.min(dim=2, keepdim=True).values
    hi = g.max(dim=2, keepdim=True).values
    scale = torch.clamp(hi - lo, min=1e-5) / maxq
    zero = torch.clamp(torch.round(-lo / scale), 0, maxq)
    q = torch.clamp(torch.round(g / scale) + zero, 0, maxq)
    w.copy_(((q - zero) * scale).view(r, c))

LIN = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']
SEQ = [['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'], ['self_attn.o_proj'], ['mlp.gate_proj', 'mlp.up_proj'], ['mlp.down_proj']]

def get(mod, name):
    for p in name.split('.'):
        mod = getattr(mod, p)
    return mod

@torch.no_grad()
def rtn_model(model, bits, group):
    for layer in model.model.layers:
        for n in LIN:
            rtn_(get(layer, n).weight.data, bits, group)

class Quantizer:
    def configure(self, bits):
        self.maxq = torch.tensor(2 ** bits - 1)
    def find_params(self, x):
        maxq = self.maxq
        tmp = torch.zeros(x.shape[0], device=x.device)
        xmin = torch.minimum(x.min(1)[0], tmp)
        xmax = torch.maximum(x.max(1)[0], tmp)
        tmp = (xmin == 0) & (xmax == 0)
        xmin[tmp] = -1
        xmax[tmp] = +1
        self.scale = ((xmax - xmin) / maxq).unsqueeze(1)
        self.zero = torch.round(-xmin / self.scale.squeeze(1)).unsqueeze(1)
    def q(self, x):
        q = torch.clamp(torch.round(x / self.scale) + self.zero, 0, self.maxq)
        return self.scale * (q - self.zero)

def fasterquant(W0, H, bits, groupsize, percdamp=0.01, actorder=False, static_groups=False, blocksize=128):
    W = W0.clone()
    cols = W.shape[1]
    H = H.clone()
    quantizer = Quantizer(); quantizer.configure(bits)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    if static_groups:
        import copy
        groups = []
        for i in range(0, cols, groupsize):
            qz = copy.deepcopy(quantizer); qz.find_params(W[:, i:i + groupsize]); groups.append(qz)
    if actorder:
        perm = torch.argsort(torch.diag(H), descending=True)
        W = W[:, perm]; H = H[perm][:, perm]
        invperm = torch.argsort(perm)
    Q = torch.zeros_like(W)
    damp = percdamp * torch.mean(torch.diag(H))
    idx = torch.arange(cols, device=W.device)
    H[idx, idx] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    H = torch.linalg.cholesky(H, upper=True)
    Hinv = H
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols); count = i2 - i1
        W1 = W[:, i1:i2].clone(); Q1 = torch.zeros_like(W1); Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i]; d = Hinv1[i, i]
            if groupsize != -1:
                if not static_groups:
                    if (i1 + i) % groupsize == 0:
                        quantizer.find_params(W[:, (i1 + i):(i1 + i + groupsize)])
                else:
                    ix = i1 + i
                    if actorder: ix = perm[ix].item()
                    quantizer = groups[ix // groupsize]
            q = quantizer.q(w.unsqueeze(1)).flatten()
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        Q[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    if actorder:
        Q = Q[:, invperm]
    return Q

@torch.no_grad()
def gptq_model(model, calib, bits, group, actorder=False, static_groups=False, percdamp=0.01, h64=False):
    layers = model.model.layers
    cache = {}
    class Catcher(nn.Module):
        def __init__(self, m):
            super().__init__(); self.m = m
        def forward(self, x, *args, **kwargs):
            cache['x'] = x; cache['args'] = args; cache['kw'] = kwargs
            raise ValueError
    layers[0] = Catcher(layers[0])
    try:
        model(calib.to(DEV), use_cache=False)
    except ValueError:
        pass
    layers[0] = layers[0].m
    inps = cache['x']; args = cache['args']; kw = cache['kw']
    kw.pop('past_key_values', None); kw.pop('past_key_value', None)
    def run(layer, x):
        o = layer(x, *args, **kw)
        return o[0] if isinstance(o, tuple) else o
    for li, layer in enumerate(layers):
        for names in SEQ:
            Hs = {}
            hooks = []
            for n in names:
                mod = get(layer, n)
                cols = mod.weight.shape[1]
                Hs[n] = [torch.zeros(cols, cols, device=DEV, dtype=torch.float64 if h64 else torch.float32), 0]
                def hook(m, inp, out, n=n):
                    x = inp[0].reshape(-1, inp[0].shape[-1]).to(Hs[n][0].dtype)
                    Hs[n][0] += x.t() @ x; Hs[n][1] += x.shape[0]
                hooks.append(mod.register_forward_hook(hook))
            run(layer, inps)
            for h in hooks: h.remove()
            for n in names:
                mod = get(layer, n)
                H = Hs[n][0] * (2 / Hs[n][1])
                Q = fasterquant(mod.weight.data.to(H.dtype), H, bits, group, percdamp, actorder, static_groups)
                mod.weight.data.copy_(Q.float())
        inps = run(layer, inps)
    return model

def main():
    ncal = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    nev = 64
    calib = windows('calib', ncal)
    ev = windows('eval', nev)
    res = {}
    t0 = time.time()
    m = load(); sd = {k: v.clone() for k, v in m.state_dict().items()}
    res['fp'] = ppl(m, ev); print('fp', res['fp'], flush=True)
    def reset():
        m.load_state_dict(sd)
    for bits in [4, 3]:
        reset(); rtn_model(m, bits, 128); res[f'rtn W{bits}'] = ppl(m, ev); print(f'rtn W{bits} g128', res[f'rtn W{bits}'], flush=True)
        for tag, kw in [('gptq', {}), ('gptq act', {'actorder': True}), ('gptq act static', {'actorder': True, 'static_groups': True}), ('gptq f64', {'h64': True})]:
            reset(); gptq_model(m, calib, bits, 128, **kw); res[f'{tag} W{bits}'] = ppl(m, ev)
            print(f'{tag} W{bits} g128 calib {ncal}x256', res[f'{tag} W{bits}'], f'{time.time()-t0:.0f}s', flush=True)
    for nc in [8, 32]:
        reset(); gptq_model(m, windows('calib', nc), 4, 128); print(f'gptq W4 g128 calib {nc}x256', ppl(m, ev), flush=True)
    # ppl on the first 4 windows (the README's earlier protocol)
    reset(); print('fp 4 windows', ppl(m, ev[:4]))
    json.dump(res, open(os.path.join(os.environ.get('OUT', HERE), 'ref.json'), 'w'), indent=1)

main()
