package proctest

import (
	"os/exec"
	"syscall"
)

// DieWithTest makes the kernel kill cmd's process when the test binary
// dies without running its cleanups (a panic, a timeout), so no server
// outlives the test. It keeps cmd's other attributes, a Credential
// included: Go sets the death signal after changing credentials, which
// would otherwise clear it.
func DieWithTest(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
