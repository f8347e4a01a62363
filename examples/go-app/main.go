// hello prints where it runs: the Go target it was built for and the machine the kernel reports.
package main

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
)

func machine() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return "unknown"
	}
	b := make([]byte, 0, len(u.Machine))
	for _, c := range u.Machine {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

func main() {
	name := "world"
	if len(os.Args) > 1 {
		name = os.Args[1]
	}
	fmt.Printf("hello, %s: built for %s/%s, running on %s\n", name, runtime.GOOS, runtime.GOARCH, machine())
}
