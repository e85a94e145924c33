package main

import (
	"os"

	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/identity/asuser"
)

// callerCred is whose rights read the files and directories a caller
// names (--wheels): real root keeps root's, anyone else (a sudo caller
// included) gets their own.
func callerCred(id identity.Identity) asuser.Cred {
	if os.Geteuid() == 0 && (os.Getenv("SUDO_USER") == "" || os.Getenv("SUDO_USER") == "root") {
		return asuser.Cred{}
	}
	return asuser.Cred{UID: id.UID, GID: id.GID}
}
