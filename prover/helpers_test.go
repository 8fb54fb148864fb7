package prover_test

import "omens.dev/omens/protocol"

func encodeChallenge(c *protocol.Challenge) ([]byte, error) { return protocol.Encode(c) }
