"""A real RSA key pair for the OAuth tests (the client signs RS256 assertions with it)."""

from typing import Tuple

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def rsa_key_pair() -> Tuple[str, rsa.RSAPublicKey]:
    """A new 2048-bit key pair: (the private key as PKCS#8 PEM text, the public key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return pem, key.public_key()
