#!/usr/bin/env python3
"""Import cycles between the crate's modules (files), for .ci/run.

Reads src/ as text: a module depends on another when it names it through `crate::…`,
`super::…`, or (for a folder's mod.rs) re-exports a child with `pub use child::…`. A
child naming its own parent (`use super::X` from a submodule) is the normal Rust
parent/child relation and is not counted. Prints the strongly connected groups and
exits 1 when there is one. A heuristic over text, not a compiler pass: a path built by a
macro is not seen.

Run on the tree before the architecture work (f5f03da) it reports the three cycles the
issue named: proxy <-> auth::endpoints, config <-> router/auth/jwt, session::store <->
session::redis.
"""
import re,os,collections,sys
root=sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
mods={}
for d,_,fs in os.walk(root):
    for f in fs:
        if f.endswith('.rs'):
            p=os.path.join(d,f); rel=os.path.relpath(p,root)[:-3].split('/')
            if rel[-1]=='mod': rel=rel[:-1]
            if rel in (['lib'],['main']): continue
            mods['::'.join(rel)]=p
def resolve(path):
    parts=path.split('::')
    for n in range(len(parts),0,-1):
        k='::'.join(parts[:n])
        if k in mods: return k
    return None
edges=collections.defaultdict(set)
for m,p in mods.items():
    src=open(p).read().split('#[cfg(test)]')[0]
    here=m.split('::')
    for t in re.findall(r'crate::((?:[a-z_]+::)*[a-z_]+)', src):
        r=resolve(t)
        if r and r!=m and not m.startswith(r+'::'): edges[m].add(r)
    for t in re.findall(r'^\s*(?:pub(?:\([a-z]+\))? )?use ((?:[a-z_]+::)*[a-z_]+)', src, re.M):
        if t.split('::')[0] in ('crate','super','self','std','core'): continue
        r=resolve('::'.join(here+[t]))
        if r and r!=m and r.startswith(m+'::'): edges[m].add(r)
    for t in re.findall(r'\bsuper::((?:[a-z_]+::)*[a-z_]+)', src):
        base=here[:-1]
        r=resolve('::'.join(base+[t])) if base else None
        if r and r!=m and not m.startswith(r+'::'): edges[m].add(r)
idx={};low={};st=[];on=set();res=[];c=[0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
    for w in edges.get(v,()):
        if w not in idx: sc(w); low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],idx[w])
    if low[v]==idx[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v: break
        if len(comp)>1: res.append(sorted(comp))
for v in list(mods):
    if v not in idx: sc(v)

if res:
    print(f"{len(mods)} modules; import cycles: {res}")
    sys.exit(1)
print(f"{len(mods)} modules; no import cycle")
