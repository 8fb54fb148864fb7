package testtpm

// SpireTPMPluginSeed0PubHash is the pub_hash that spire-tpm-plugin (the earlier external
// SPIRE TPM plugin) states in its own test (tools/get_tpm_pubhash/get_tpm_pubhash_test.go,
// tpmPubHashExpected) for the EK of the go-tpm-tools reference simulator started with
// GetWithFixedSeedInsecure(0): the SHA-256 of the RSA-2048 EK public key in PKIX DER, the
// same with or without an EK certificate in NV. A tpmsim host whose seed file holds
// Seed0 has that EK.
const SpireTPMPluginSeed0PubHash = "1b5bbe2e96054f7bc34ebe7ba9a4a9eac5611c6879285ceff6094fa556af485c"

// Seed0 is the content of a tpmsim seed file for the fixed seed 0.
const Seed0 = "0000000000000000"
