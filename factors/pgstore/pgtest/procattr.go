package pgtest

import "syscall"

// procAttr runs the process as cred (nil: as the caller). proctest adds
// the death signal; PostgreSQL's children exit when the postmaster dies.
func procAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred}
}
