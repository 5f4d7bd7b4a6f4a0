package framework

import "syscall"

// sysProcAttr puts a child in a process group of its own and has the kernel kill it
// should the test binary die without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
