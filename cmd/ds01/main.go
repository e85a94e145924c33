// Command ds01 gives every user of a shared GPU server an image of their
// own, with their account baked in, assembled in well under a second
// instead of built, and containers made from it.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v3"

	"github.com/ds01/ds01/internal/ops"
	"github.com/ds01/ds01/internal/termsafe"
)

// Exit codes.
const (
	exitFailure = 1 // the command ran and failed
	exitUsage   = 2 // bad flags or arguments, or a command not built yet
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newApp().Run(ctx, argv(os.Args))
	stop()
	if err != nil {
		// Errors quote registries, bases and files: escaped, so that none
		// of them writes to the terminal. An empty one is a command's own
		// exit status passed on (container open), which said its piece.
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "ds01:", termsafe.Text(msg))
		}
		os.Exit(exitCode(err))
	}
}

// argv lets the binary act as one command when run through a symlink named
// like the DS01 scripts it replaces (image-create, container-deploy, …).
func argv(args []string) []string {
	name := filepath.Base(args[0])
	if _, ok := dashNames[name]; ok {
		return append([]string{"ds01", name}, args[1:]...)
	}
	return args
}

func exitCode(err error) int {
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, ops.ErrRootOnly) || errors.Is(err, ops.ErrPullOffline) {
		return exitUsage
	}
	return exitFailure
}

// usageError marks mistakes in how a command was called.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }
