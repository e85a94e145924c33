package label

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestImageRoundTrip(t *testing.T) {
	epoch := int64(1700000000)
	im := Image{UID: 1722830498, GID: 1722830498, Username: "h-baker", Login: "h.baker@hertie-school.lan", Project: "p",
		Base: "aimehub/pytorch:2.5,x", BaseID: "sha256:ab", BaseDigest: "sha256:cd", Version: "v1", SourceDateEpoch: &epoch,
		Catalog: map[string]string{"framework": "Pytorch", "version": "2.5.1"}, PackagesApt: []string{"jq=1.6-2"}, PackagesPip: []string{"numpy==2.1", "pandas==2.2"}, PackagesLayer: "sha256:ef"}
	m := im.Encode()
	for k, v := range m {
		if strings.Contains(v, ",") {
			t.Errorf("%s=%q has a comma", k, v)
		}
	}
	m[AIMEHasUserSetup], m[AIMEUserID], m[AIMEGroupID] = "true", "1722830498", "1722830498"
	got, has := DecodeImage(m)
	if !has || !reflect.DeepEqual(got, im) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, im)
	}
}

func TestContainerRoundTrip(t *testing.T) {
	c := Container{Login: "h.baker@hertie-school.lan", Name: "p", UID: 5, GID: 6, Workspace: "/home/a,b/ws", Models: "/m",
		GPUs: "device=0,1", Arch: "CUDA_ADA", CreatedAt: time.Unix(1700000000, 0).UTC(), Interface: "cli", SetuidRiskAccepted: true,
		Extra: map[string]string{Bind + "workspace": "1:2:rw:/home/a,b/ws"}}
	m := c.Encode()
	if m["aime.mlc.GPUS"] != "device=0%2C1" || m["aime.mlc.DATA_MOUNT"] != "-" || m["aime.mlc.FRAMEWORK"] != "custom" {
		t.Errorf("AIME labels: %v", m)
	}
	for k, v := range m {
		if strings.Contains(v, ",") {
			t.Errorf("%s=%q has a comma", k, v)
		}
	}
	if got := DecodeContainer(m); !reflect.DeepEqual(got, c) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, c)
	}
}

func FuzzDecodeContainer(f *testing.F) {
	f.Add("device=0%2C1", "/w%2", "5", "x")
	f.Fuzz(func(t *testing.T, gpus, ws, uid, bind string) {
		c := DecodeContainer(map[string]string{GPUs: gpus, "aime.mlc.WORK_MOUNT": ws, UserID: uid, Bind + "w": bind})
		for k, v := range c.Encode() {
			if strings.Contains(v, ",") {
				t.Fatalf("%s=%q has a comma after a round trip", k, v)
			}
		}
	})
}
