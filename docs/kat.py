#!/usr/bin/env python3
"""Known-answer vectors for src/seal.rs (grant seal and pending hand-off seal),
computed independently of the Rust code with Python's `cryptography` package.
Run: python3 docs/kat.py"""
import base64, hashlib, hmac
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

def hkdf(salt, ikm, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)

server_secret = b"server-secret-one-0123456789abcdefghij"   # "1:<this>"
keyid = bytes.fromhex("00112233445566778899aabbccddeeff")
authid_secret = b"SECRET-half_of.the-authid-0123456789abcdef"
provider, version = "box.com", 1

lookup_key = hkdf(None, server_secret, b"oauth-broker/v1/lookup")
seal_salt = hkdf(None, server_secret, b"oauth-broker/v1/seal-salt")
key_hash = hmac.new(lookup_key, b"oauth-broker/v1/keyid" + keyid, hashlib.sha256).hexdigest()
grant_key = hkdf(seal_salt, authid_secret, b"oauth-broker/v1/grant-key" + key_hash.encode())
aad = f"oauth-broker/v1/grant|{key_hash}|{provider}|{version}".encode()
ct = AESGCM(grant_key).encrypt(bytes([7] * 12), b'{"refresh_token":"RT"}', aad)

# Pending hand-off (Duplicati's old UI): the authid sealed for the UI's token.
handoff_token = b"handoff-token_0123.456~789"
handoff_authid = b"00112233445566778899aabbccddeeff:SECRET-half_of.the-authid-0123456789abcdef"
handoff_salt = hkdf(None, server_secret, b"oauth-broker/v1/handoff-salt")
token_hash = hashlib.sha256(b"oauth-broker/v1/fetch-token|" + handoff_token).hexdigest()
handoff_key = hkdf(handoff_salt, handoff_token, b"oauth-broker/v1/handoff-key")
handoff_aad = f"oauth-broker/v1/handoff|{token_hash}|{version}".encode()
handoff_ct = AESGCM(handoff_key).encrypt(bytes([9] * 12), handoff_authid, handoff_aad)

print(f'const KAT_LOOKUP_KEY: &str = "{lookup_key.hex()}";')
print(f'const KAT_SEAL_SALT: &str = "{seal_salt.hex()}";')
print(f'const KAT_KEY_HASH: &str = "{key_hash}";')
print(f'const KAT_GRANT_KEY: &str = "{grant_key.hex()}";')
print(f'const KAT_CIPHERTEXT: &str = "{base64.b64encode(ct).decode()}";')
print(f'const KAT_HANDOFF_SALT: &str = "{handoff_salt.hex()}";')
print(f'const KAT_HANDOFF_KEY: &str = "{handoff_key.hex()}";')
print(f'const KAT_HANDOFF_CIPHERTEXT: &str = "{base64.b64encode(handoff_ct).decode()}";')
