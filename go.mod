module omens.dev/omens

go 1.26

require github.com/google/go-tpm v0.9.8

require (
	github.com/google/go-tpm-tools v0.4.11 // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/cobra v1.10.2 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
	golang.org/x/sys v0.45.0 // indirect
)
