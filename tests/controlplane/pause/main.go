// pause: the sandbox ("pause") container of the test node's Pods. It holds the Pod's
// namespaces, reaps orphaned children (it is PID 1 of the sandbox) and exits on SIGINT or
// SIGTERM. No image registry is reachable from the test machines, so the suite builds this
// instead of pulling registry.k8s.io/pause.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
