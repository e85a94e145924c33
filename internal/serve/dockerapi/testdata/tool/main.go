// Command tool is the whole userland of the dockerapi tests' image: a
// static binary, so the tests need no base image, registry or network.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tool serve|id|echo|cat|repl|exit")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve": // a long-running container that logs and stops at once on SIGTERM
		fmt.Println("ready")
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		tick := time.NewTicker(time.Second)
		for {
			select {
			case <-sig:
				fmt.Println("stopping")
				return
			case <-tick.C:
			}
		}
	case "id":
		fmt.Printf("uid=%d gid=%d\n", os.Getuid(), os.Getgid())
	case "echo":
		fmt.Println(strings.Join(os.Args[2:], " "))
	case "cat":
		io.Copy(os.Stdout, os.Stdin)
	case "repl": // for attach and exec -it: answers each line
		fmt.Println("repl ready")
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() == "quit" {
				return
			}
			fmt.Printf("got %s\n", strings.ToUpper(sc.Text()))
		}
	case "exit":
		os.Exit(3)
	}
}
