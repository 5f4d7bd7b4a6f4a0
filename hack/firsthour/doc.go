// Package firsthour tests the first hour of a new user: it runs `make run` as the README
// says, pastes every command the local stack prints into a fresh shell as a person would
// (one terminal per identity: the cluster admin, a producer, an operator), and every
// example of the README's "Command line and kubectl plugin" section, and checks each
// command's exit status and output. A printed command or README example that stops
// working fails `make test` here. It then restarts the stack on the same state and
// checks that tokens exported before the restart still work.
//
// `go test ./hack/firsthour -v` shows every command and its output.
package firsthour
