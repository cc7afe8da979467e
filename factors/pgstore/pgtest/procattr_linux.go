package pgtest

import "syscall"

// procAttr runs the process as cred (nil: as the caller) and makes the
// kernel kill it when the test binary dies without running its cleanups;
// Go sets the death signal after changing credentials, which would
// otherwise clear it. PostgreSQL's children exit when the postmaster dies.
func procAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
}
