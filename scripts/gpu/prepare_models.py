#!/usr/bin/env python3
"""Copies real model folders into a carry folder with plain-text manifests gpu_check reads
(no JSON parser in C++): config.txt (key value), tensors.txt (name dtype file begin end dims...),
cases.txt (one line per golden case: prompt ids | greedy ids | top1 id per position).
Usage: prepare_models.py SRC_MODELS_DIR DEST_DIR name..."""
import json, os, shutil, struct, sys

src, dst, names = sys.argv[1], sys.argv[2], sys.argv[3:]
for name in names:
    s, d = os.path.join(src, name), os.path.join(dst, name)
    os.makedirs(d, exist_ok=True)
    cfg = json.load(open(os.path.join(s, 'config.json')))
    theta = cfg.get('rope_theta') or cfg.get('rope_parameters', {}).get('rope_theta', 10000.0)
    with open(os.path.join(d, 'config.txt'), 'w') as f:
        for k, v in [('vocab', cfg['vocab_size']), ('hidden', cfg['hidden_size']), ('layers', cfg['num_hidden_layers']),
                     ('heads', cfg['num_attention_heads']), ('kvHeads', cfg.get('num_key_value_heads', cfg['num_attention_heads'])),
                     ('headDim', cfg.get('head_dim', cfg['hidden_size'] // cfg['num_attention_heads'])),
                     ('ffn', cfg['intermediate_size']), ('maxPositions', cfg['max_position_embeddings']),
                     ('ropeTheta', theta), ('rmsEps', cfg['rms_norm_eps']), ('tied', int(bool(cfg.get('tie_word_embeddings', False))))]:
            f.write(f'{k} {v}\n')
    lines = []
    for fn in sorted(os.listdir(s)):
        if not fn.endswith('.safetensors'):
            continue
        shutil.copy(os.path.join(s, fn), os.path.join(d, fn))
        with open(os.path.join(s, fn), 'rb') as f:
            n = struct.unpack('<Q', f.read(8))[0]
            h = json.loads(f.read(n))
        for k, v in h.items():
            if k == '__metadata__':
                continue
            b, e = v['data_offsets']
            lines.append(' '.join([k, v['dtype'], fn, str(8 + n + b), str(8 + n + e)] + [str(x) for x in v['shape']]))
    open(os.path.join(d, 'tensors.txt'), 'w').write('\n'.join(lines) + '\n')
    g = json.load(open(os.path.join(s, 'golden.json')))
    with open(os.path.join(d, 'cases.txt'), 'w') as f:
        for c in g['cases']:
            f.write(' '.join(map(str, c['prompt_ids'])) + ' | ' + ' '.join(map(str, c['greedy_ids'])) + ' | ' +
                    ' '.join(str(t[0]) for t in c['top8_ids']) + '\n')
    print('prepared', name)
