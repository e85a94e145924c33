package main

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"os"
	"slices"

	"github.com/urfave/cli/v3"
)

// dashNamesCmd prints the DS01 script names the binary answers to, one a
// line: scripts/package-deb makes a symlink for each from this list, so
// the package cannot drift from the binary it ships.
func dashNamesCmd() *cli.Command {
	return &cli.Command{
		Name:   "dash-names",
		Usage:  "print the DS01 command names (image-create, …) the binary answers to through a symlink",
		Hidden: true,
		Action: func(_ context.Context, cmd *cli.Command) error {
			for _, n := range slices.Sorted(maps.Keys(dashNames)) {
				fmt.Fprintln(cmd.Root().Writer, n)
			}
			return nil
		},
	}
}

// dpkgList is where dpkg lists the files of the installed ds01 package.
var dpkgList = "/var/lib/dpkg/info/ds01.list"

// Where the Debian package puts what ds01 version names.
const (
	unitDir    = "/lib/systemd/system"
	policyFile = DefaultPolicy
)

// installedLine is what ds01 version says of how the running binary was
// installed: by the ds01 Debian package when dpkg lists it, else "".
func installedLine() string {
	exe, err := os.Executable()
	if err != nil || !listed(dpkgList, exe) {
		return ""
	}
	return fmt.Sprintf("installed by the Debian package ds01: %s, the DS01 commands beside it (image-create, container-deploy, …), "+
		"the units ds01.socket and ds01.service in %s, the policy %s (dpkg -L ds01 lists every file)", exe, unitDir, policyFile)
}

// listed reports whether the file list at path (one path a line, as dpkg
// keeps it) names p.
func listed(path, p string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if s.Text() == p {
			return true
		}
	}
	return false
}
