//go:build !linux

package proctest

import "os/exec"

// DieWithTest does nothing where Pdeathsig is unavailable; t.Cleanup still
// stops the server.
func DieWithTest(*exec.Cmd) {}
