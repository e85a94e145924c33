package passwd

import (
	"strings"
	"testing"
)

func TestHostGroups(t *testing.T) {
	group := baseGroup + "proj:x:1500:\nml:x:1600:\n"
	db := NewDB(map[Kind][]byte{Passwd: []byte(basePasswd), Group: []byte(group), Shadow: []byte(baseShadow), GShadow: []byte(baseGShadow)})
	res, err := db.AddUser(Account{Name: "alice", UID: 2000, GID: 2000, Groups: []string{"sudo"}, HostGroups: []HostGroup{
		{"lab-project", 1500},         // the base has GID 1500 as proj: join it
		{"ML Team@lab.example", 4242}, // new, sanitized
		{"ml", 4343},                  // name taken by another GID
		{"docker", 999},               // system GID: left out
		{"alice", 2000},               // the primary group
		{"again", 1500},               // joined once
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := string(db.File(Group).Bytes())
	for _, want := range []string{"sudo:x:27:alice\n", "proj:x:1500:alice\n", "ml-team:x:4242:alice\n", "ml-4343:x:4343:alice\n", "alice:x:2000:\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("group lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "docker") || strings.Count(got, ":1500:") != 1 {
		t.Errorf("group:\n%s", got)
	}
	if gs := string(db.File(GShadow).Bytes()); !strings.Contains(gs, "ml-team:!::alice") || !strings.Contains(gs, "ml-4343:!::alice") {
		t.Errorf("gshadow:\n%s", gs)
	}
	if strings.Join(res.Joined, " ") != "sudo proj ml-team ml-4343" {
		t.Errorf("joined %v", res.Joined)
	}
	// The same user again changes nothing.
	res, err = db.AddUser(Account{Name: "alice", UID: 2000, GID: 2000, Groups: []string{"sudo"}, HostGroups: []HostGroup{{"lab-project", 1500}, {"ML Team@lab.example", 4242}, {"ml", 4343}}})
	if err != nil || !res.Unchanged {
		t.Errorf("second add: %+v, %v", res, err)
	}
}
