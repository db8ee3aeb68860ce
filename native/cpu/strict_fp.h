// Include first in every CPU source that does arithmetic. Batch invariance is bitwise: a token's
// numbers must not depend on which code path (vectorised body, scalar edge, other tile shape)
// computed them. IEEE add and multiply are deterministic, but a compiler allowed to fuse a*b+c
// into one FMA may fuse in one copy of a loop and not in another. GCC fuses across statements by
// default wherever the target has FMA (aarch64 always does), so switch contraction off here.
// Reassociation (-ffast-math) must stay off too; the build never enables it.
#pragma once
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
