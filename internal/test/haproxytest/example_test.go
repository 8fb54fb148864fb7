package haproxytest_test

import (
	"fmt"

	"omens.dev/omens/internal/test/haproxytest"
)

// The configuration for two SPIRE servers behind one address.
func ExampleConfig() {
	fmt.Print(haproxytest.Config(8081, []string{"10.0.0.11:8081", "10.0.0.12:8081"}))
	// Output:
	// global
	//     maxconn 4096
	//
	// defaults
	//     mode tcp
	//     timeout connect 2s
	//     timeout client 1h
	//     timeout server 1h
	//     retries 3
	//     option redispatch
	//
	// frontend omens
	//     bind 127.0.0.1:8081
	//     default_backend servers
	//
	// backend servers
	//     balance roundrobin
	//     default-server inter 500ms fall 2 rise 2
	//     server s0 10.0.0.11:8081 check
	//     server s1 10.0.0.12:8081 check
}
