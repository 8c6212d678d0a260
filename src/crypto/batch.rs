//! Ed25519 verification of concurrent inbound requests in batches.
//!
//! A server's HTTP worker that receives many signed requests at once checks their signatures
//! together: one multi-scalar multiplication over every signature's R, the base point and each
//! distinct key, with a random 128-bit weight per signature, costs about a third of as many
//! single verifications at eight signatures (docs/BENCHMARKS.md). Each request queues its
//! signature on its worker thread and yields once; the runtime runs every other request that is
//! ready first (each queues its own), and whichever resumes first checks the whole queue.
//!
//! What a batch accepts. A batch passes when the weighted sum of `[8](R + [k]A - [s]B)` over its
//! signatures is the identity (the cofactored equation). Before that every signature gets the
//! checks [`super::verify_strict`] makes (s canonical, R canonical and not of small order, the key
//! not of small order). A signature the strict rule accepts passes in any batch of valid ones; one
//! whose equation fails makes its batch fail but for a chance of about 2^-128 (the weights are
//! random). The exception is a signature whose R carries a small-order component: the cofactored
//! equation takes it, the strict rule refuses it, so it passes in a batch and is refused alone.
//! Only the holder of the key's private half can make one (s still has to satisfy the equation),
//! so it proves what any signature of that key proves. A batch that fails is checked again one
//! signature at a time with the strict rule, and the worker then verifies singly for
//! [`SINGLY_FOR`], so a peer sending forged signatures costs each worker at most one failed batch
//! a second beyond the single verifications it would cost anyway. A batch of one is a single
//! strict verification.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha512};

/// The most signatures one check takes: beyond this the time per signature hardly falls, and a
/// failed batch costs this many single verifications more.
pub const MAX_BATCH: usize = 64;

/// How long a worker verifies singly after one of its batches failed.
pub const SINGLY_FOR: Duration = Duration::from_secs(1);

/// How a signature's verdict was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Verified on its own (it was alone in its worker's queue, or batching is off).
    Alone,
    /// Its batch passed.
    Batch,
    /// Its batch failed and it was verified again on its own, or it was verified on its own
    /// because a batch of its worker failed less than [`SINGLY_FOR`] before.
    Rechecked,
}

impl How {
    /// Every variant, in label order.
    pub const ALL: [How; 3] = [How::Alone, How::Batch, How::Rechecked];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            How::Alone => "alone",
            How::Batch => "batch",
            How::Rechecked => "rechecked",
        }
    }
}

/// A signature's verdict and how it was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// The signature is valid.
    pub valid: bool,
    /// How that was found.
    pub how: How,
}

/// Whether `y`'s 255 low bits are below 2^255 - 19 (the encoding of a field element is canonical).
fn canonical_y(bytes: &[u8; 32]) -> bool {
    let top = bytes[31] & 0x7f;
    !(top == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff) && bytes[0] >= 0xed)
}

/// Checks every `(key, message, signature)` at once: true when each one satisfies the cofactored
/// Ed25519 equation and passes the strict rule's encoding checks (see the module's notes); false
/// when any does not (which one is not known). An empty slice passes.
pub fn verify_batch(items: &[(&VerifyingKey, &[u8], &Signature)]) -> bool {
    let n = items.len();
    let mut weights = vec![0u8; 16 * n];
    if getrandom::fill(&mut weights).is_err() {
        return false;
    }
    let mut scalars = Vec::with_capacity(n + 2);
    let mut points = Vec::with_capacity(n + 2);
    // Distinct keys with their summed coefficients: a server's peers are few, so a short list.
    let mut keys: Vec<(&VerifyingKey, Scalar)> = Vec::new();
    let mut base = Scalar::ZERO;
    for (i, (key, message, signature)) in items.iter().enumerate() {
        let r_bytes = signature.r_bytes();
        if key.is_weak() || !canonical_y(r_bytes) {
            return false;
        }
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(*signature.s_bytes()))
        else {
            return false;
        };
        // Of small order also when its encoding is not canonical (x = 0 with the sign bit set).
        let Some(r) = CompressedEdwardsY(*r_bytes)
            .decompress()
            .filter(|r| !r.is_small_order())
        else {
            return false;
        };
        let k = challenge(r_bytes, key, message);
        let mut z = [0u8; 32];
        z[..16].copy_from_slice(&weights[16 * i..16 * i + 16]);
        let z = Scalar::from_bytes_mod_order(z);
        base -= z * s;
        let zk = z * k;
        match keys
            .iter_mut()
            .find(|(known, _)| known.as_bytes() == key.as_bytes())
        {
            Some((_, coefficient)) => *coefficient += zk,
            None => keys.push((key, zk)),
        }
        scalars.push(z);
        points.push(r);
    }
    scalars.push(base);
    points.push(ED25519_BASEPOINT_POINT);
    for (key, coefficient) in keys {
        scalars.push(coefficient);
        points.push(key.to_edwards());
    }
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

/// Ed25519's k: SHA-512 of R, the key and the message, reduced mod l.
fn challenge(r_bytes: &[u8; 32], key: &VerifyingKey, message: &[u8]) -> Scalar {
    let digest = Sha512::new()
        .chain_update(r_bytes)
        .chain_update(key.as_bytes())
        .chain_update(message)
        .finalize();
    Scalar::from_bytes_mod_order_wide(&digest.into())
}

/// A signature waiting in its worker's queue.
struct Pending {
    key: VerifyingKey,
    message: String,
    signature: Signature,
    verdict: Rc<Cell<Option<Checked>>>,
}

thread_local! {
    /// The signatures queued on this thread and not yet checked.
    static QUEUE: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
    /// Until when this thread verifies singly: a batch of its failed [`SINGLY_FOR`] before.
    static SINGLY_UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Verifies `signature` over `message` with `key`, in a batch with the other signatures that
/// requests on this worker thread are verifying at the same moment. Off a current-thread runtime
/// (an HTTP worker's), it verifies at once on its own.
pub async fn verify(key: &VerifyingKey, message: String, signature: Signature) -> Checked {
    if !crate::store::on_worker_thread() {
        return alone(key, message.as_bytes(), &signature);
    }
    let verdict = Rc::new(Cell::new(None));
    QUEUE.with_borrow_mut(|q| {
        q.push(Pending {
            key: *key,
            message,
            signature,
            verdict: verdict.clone(),
        })
    });
    // Every request that is ready on this thread runs (and queues its signature) before this
    // one resumes: tokio runs a yielded task after the tasks already scheduled.
    tokio::task::yield_now().await;
    while verdict.get().is_none() {
        let taken: Vec<Pending> = QUEUE.with_borrow_mut(|q| {
            let n = q.len().min(MAX_BATCH);
            q.drain(..n).collect()
        });
        if taken.is_empty() {
            break;
        }
        check(taken);
    }
    // Only a queue emptied without this signature in it (which nothing does) leaves it unset.
    match verdict.get() {
        Some(checked) => checked,
        None => Checked {
            valid: false,
            how: How::Alone,
        },
    }
}

/// Verifies `signature` over `message` with `key` on its own, with the strict rule.
pub(super) fn alone(key: &VerifyingKey, message: &[u8], signature: &Signature) -> Checked {
    Checked {
        valid: super::verify_strict(key, message, signature),
        how: How::Alone,
    }
}

/// Checks a queue taken off this thread and hands each waiting request its verdict. A signature
/// whose request is gone (its client disconnected, its future dropped) is not checked: the queue
/// holds the only reference to its verdict.
fn check(mut taken: Vec<Pending>) {
    taken.retain(|p| Rc::strong_count(&p.verdict) > 1);
    let singly = SINGLY_UNTIL
        .get()
        .is_some_and(|until| Instant::now() < until);
    let mut how = if singly { How::Rechecked } else { How::Alone };
    if taken.len() > 1 && !singly {
        let items: Vec<_> = taken
            .iter()
            .map(|p| (&p.key, p.message.as_bytes(), &p.signature))
            .collect();
        if verify_batch(&items) {
            for p in &taken {
                p.verdict.set(Some(Checked {
                    valid: true,
                    how: How::Batch,
                }));
            }
            return;
        }
        SINGLY_UNTIL.set(Some(Instant::now() + SINGLY_FOR));
        how = How::Rechecked;
    }
    for p in &taken {
        let valid = super::verify_strict(&p.key, p.message.as_bytes(), &p.signature);
        p.verdict.set(Some(Checked { valid, how }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SigningKeyPair;
    use crate::crypto::keys::SMALL_ORDER;

    fn signed(keys: &SigningKeyPair, n: usize) -> (Vec<u8>, Signature) {
        let message = format!("message {n}").into_bytes();
        let signature = Signature::from_bytes(&keys.sign(&message));
        (message, signature)
    }

    /// `n` genuine signatures by `keys`, with their key and message.
    fn genuine(keys: &SigningKeyPair, n: usize) -> Vec<(VerifyingKey, Vec<u8>, Signature)> {
        (0..n)
            .map(|i| {
                let (m, s) = signed(keys, i);
                (keys.verifying_key(), m, s)
            })
            .collect()
    }

    /// `signature` with `bits` of its byte `at` flipped.
    fn flipped(signature: &Signature, at: usize, bits: u8) -> Signature {
        let mut bytes = signature.to_bytes();
        bytes[at] ^= bits;
        Signature::from_bytes(&bytes)
    }

    fn check_all(items: &[(VerifyingKey, Vec<u8>, Signature)]) -> bool {
        let refs: Vec<_> = items.iter().map(|(k, m, s)| (k, m.as_slice(), s)).collect();
        verify_batch(&refs)
    }

    #[test]
    fn a_batch_of_genuine_signatures_under_several_keys_passes() {
        let signers: Vec<_> = (0..3)
            .map(|_| SigningKeyPair::generate().unwrap())
            .collect();
        let items: Vec<_> = (0..20)
            .map(|i| {
                let keys = &signers[i % 3];
                let (m, s) = signed(keys, i);
                (keys.verifying_key(), m, s)
            })
            .collect();
        assert!(check_all(&items));
        assert!(check_all(&items[..1]));
    }

    #[test]
    fn one_bad_signature_fails_the_batch() {
        let keys = SigningKeyPair::generate().unwrap();
        let other = SigningKeyPair::generate().unwrap();
        let genuine = genuine(&keys, 16);
        // A changed message, a signature under another key, a changed s, a changed R.
        let mut bad = genuine.clone();
        bad[5].1[0] ^= 1;
        assert!(!check_all(&bad));
        let mut bad = genuine.clone();
        bad[9].0 = other.verifying_key();
        assert!(!check_all(&bad));
        let mut bad = genuine.clone();
        bad[15].2 = flipped(&bad[15].2, 40, 4);
        assert!(!check_all(&bad));
        let mut bad = genuine.clone();
        bad[0].2 = flipped(&bad[0].2, 3, 1);
        assert!(!check_all(&bad));
        assert!(check_all(&genuine));
    }

    /// The strict rule's encoding checks hold inside a batch too: a non-canonical s (s + l) and
    /// an R of small order are refused even though every other signature is genuine.
    #[test]
    fn encodings_the_strict_rule_refuses_fail_the_batch() {
        let keys = SigningKeyPair::generate().unwrap();
        let genuine = genuine(&keys, 4);
        // s + l: the same scalar, not canonical.
        let mut bad = genuine.clone();
        let mut bytes = bad[1].2.to_bytes();
        let s = Scalar::from_canonical_bytes(bytes[32..].try_into().unwrap()).unwrap();
        let l_plus = {
            // l = 2^252 + 27742317777372353535851937790883648493, little-endian.
            let l: [u8; 32] = [
                0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
                0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
            ];
            let mut out = [0u8; 32];
            let mut carry = 0u16;
            for i in 0..32 {
                let v = u16::from(s.as_bytes()[i]) + u16::from(l[i]) + carry;
                out[i] = v as u8;
                carry = v >> 8;
            }
            out
        };
        bytes[32..].copy_from_slice(&l_plus);
        bad[1].2 = Signature::from_bytes(&bytes);
        assert!(!check_all(&bad));
        // The identity as R.
        let mut bad = genuine.clone();
        let mut bytes = bad[2].2.to_bytes();
        bytes[..32].copy_from_slice(&SMALL_ORDER[0]);
        bad[2].2 = Signature::from_bytes(&bytes);
        assert!(!check_all(&bad));
        // A key holder's signature with the identity as R, written with the sign bit set (not
        // canonical, not in the list of small-order encodings): s = k a satisfies the cofactored
        // equation, and the strict rule refuses it, so the batch must too.
        let mut r_bytes = SMALL_ORDER[0];
        r_bytes[31] |= 0x80;
        let message = b"no nonce".to_vec();
        let s = challenge(&r_bytes, &keys.verifying_key(), &message) * keys.secret_scalar();
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&r_bytes);
        bytes[32..].copy_from_slice(s.as_bytes());
        let crafted = Signature::from_bytes(&bytes);
        assert!(!crate::crypto::verify_strict(
            &keys.verifying_key(),
            &message,
            &crafted
        ));
        let mut bad = genuine.clone();
        bad.push((keys.verifying_key(), message, crafted));
        assert!(!check_all(&bad));
        assert!(!canonical_y(&[0xff; 32]));
        assert!(canonical_y(&ED25519_BASEPOINT_POINT.compress().to_bytes()));
    }

    /// What a batch accepts and the strict rule does not: a signature whose R has a small-order
    /// component added, which its key's holder made. Refused alone, accepted in a batch; a
    /// stranger's forgery stays refused either way.
    #[test]
    fn a_key_holders_signature_with_a_small_order_component_passes_only_in_a_batch() {
        let keys = SigningKeyPair::generate().unwrap();
        let public = keys.verifying_key();
        let secret = keys.secret_scalar();
        let message = b"crafted".to_vec();
        // r chosen freely, R' = [r]B + T with T of order 8, s = r + k' a with k' = H(R'||A||M).
        let r = Scalar::from_bytes_mod_order([9; 32]);
        let order_eight = CompressedEdwardsY(SMALL_ORDER[4]).decompress().unwrap();
        let r_point = EdwardsPoint::mul_base(&r) + order_eight;
        let r_bytes = r_point.compress().to_bytes();
        let s = r + challenge(&r_bytes, &public, &message) * secret;
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&r_bytes);
        bytes[32..].copy_from_slice(s.as_bytes());
        let crafted = Signature::from_bytes(&bytes);
        assert!(!crate::crypto::verify_strict(&public, &message, &crafted));
        let (m, genuine) = signed(&keys, 1);
        let items = vec![(public, message.clone(), crafted), (public, m, genuine)];
        assert!(check_all(&items));
    }

    proptest::proptest! {
        /// Beside genuine signatures, a signature with any of its bits flipped, or any R of
        /// small order put in: the batch passes exactly when the strict rule accepts it.
        #[test]
        fn a_batch_agrees_with_the_strict_rule_on_changed_signatures(
            seed in proptest::prelude::any::<[u8; 32]>(),
            flip in proptest::option::of((0usize..64, 0u8..8)),
            small_r in proptest::option::of(0usize..8),
        ) {
            let keys = SigningKeyPair::from_base64(&crate::crypto::b64_encode(seed)).unwrap();
            let mut items = genuine(&keys, 3);
            let (_, message, signature) = &mut items[1];
            if let Some((at, bit)) = flip {
                *signature = flipped(signature, at, 1 << bit);
            }
            if let Some(i) = small_r {
                let mut bytes = signature.to_bytes();
                bytes[..32].copy_from_slice(&SMALL_ORDER[i]);
                *signature = Signature::from_bytes(&bytes);
            }
            let strict = crate::crypto::verify_strict(&keys.verifying_key(), message, signature);
            proptest::prop_assert_eq!(check_all(&items), strict);
        }
    }

    /// A signature whose request went away while it waited is left out of its batch: a forged one
    /// among them neither fails the others' batch nor sends the thread into single checks.
    #[test]
    fn a_signature_whose_request_is_gone_is_not_checked() {
        let keys = SigningKeyPair::generate().unwrap();
        let pending = |i: usize, forged: bool| {
            let (m, mut s) = signed(&keys, i);
            if forged {
                s = flipped(&s, 50, 1);
            }
            let verdict = Rc::new(Cell::new(None));
            let p = Pending {
                key: keys.verifying_key(),
                message: String::from_utf8(m).unwrap(),
                signature: s,
                verdict: verdict.clone(),
            };
            (p, verdict)
        };
        let (mut taken, waiting): (Vec<_>, Vec<_>) = (0..8).map(|i| pending(i, false)).unzip();
        let (gone, its_verdict) = pending(8, true);
        drop(its_verdict);
        taken.insert(3, gone);
        check(taken);
        for (i, v) in waiting.iter().enumerate() {
            let expected = Checked {
                valid: true,
                how: How::Batch,
            };
            assert_eq!(v.get(), Some(expected), "{i}");
        }
        assert_eq!(SINGLY_UNTIL.get(), None);
    }

    /// Many requests on one current-thread runtime verify in batches; each gets its own verdict,
    /// a bad one among them included, and after a failed batch the thread verifies singly for
    /// [`SINGLY_FOR`].
    #[test]
    fn concurrent_requests_on_one_thread_get_their_own_verdicts() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        let keys = SigningKeyPair::generate().unwrap();
        let public = keys.verifying_key();
        let round = |bad: Option<usize>| {
            let tasks: Vec<_> = (0..24)
                .map(|i| {
                    let (m, mut s) = signed(&keys, i);
                    if bad == Some(i) {
                        s = flipped(&s, 50, 1);
                    }
                    let message = String::from_utf8(m).unwrap();
                    local.spawn_local(async move { verify(&public, message, s).await })
                })
                .collect();
            local.block_on(&rt, async {
                let mut out = Vec::new();
                for t in tasks {
                    out.push(t.await.unwrap());
                }
                out
            })
        };
        let all = round(None);
        assert!(
            all.iter().all(|c| c.valid && c.how == How::Batch),
            "{all:?}"
        );
        let with_bad = round(Some(7));
        for (i, c) in with_bad.iter().enumerate() {
            assert_eq!(c.valid, i != 7, "{i}: {c:?}");
            assert_eq!(c.how, How::Rechecked, "{i}");
        }
        // The next queue is checked singly; once SINGLY_FOR has passed, in a batch again.
        let next = round(None);
        assert!(next.iter().all(|c| c.valid && c.how == How::Rechecked));
        std::thread::sleep(SINGLY_FOR + Duration::from_millis(50));
        let after = round(None);
        assert!(after.iter().all(|c| c.valid && c.how == How::Batch));
    }
}
