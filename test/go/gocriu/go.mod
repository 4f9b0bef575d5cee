// Built in GOPATH mode against Debian's packaged go-criu (test/rpc-go.test.ts copies this
// directory into a GOPATH beside /usr/share/gocode, GO111MODULE=off: nothing is fetched).
// This file is what lets GOPATH mode resolve go-criu's ".../go-criu/v5" import paths
// (Go's minimal module compatibility applies to code with a go.mod).
module tscriu/gocriu

go 1.19
