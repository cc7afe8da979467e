//go:build !linux

package redistest

import "os/exec"

// setProcAttr does nothing where Pdeathsig is unavailable; t.Cleanup still
// stops the server.
func setProcAttr(*exec.Cmd) {}
