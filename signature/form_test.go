package signature

import (
	"net/url"
	"testing"
)

func TestFormPayload(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	json := `{"zen":"Design for failure.","hook_id":1,"a":"b&c=d+e%"}`
	for _, tt := range []struct {
		name, contentType, body string
		want                    string
		ok                      bool
	}{
		{"github", form, "payload=" + url.QueryEscape(json), json, true},
		{"charset", "Application/X-WWW-Form-Urlencoded; charset=utf-8", "payload=%7B%7D", "{}", true},
		{"blanks around the media type", " " + form + "\t;x=y", "payload=%7B%7D", "{}", true},
		{"plus is a space", form, "payload=%7B%22a%22:+1%7D", `{"a": 1}`, true},
		{"plain bytes", form, `payload={"a":[1,2]}`, `{"a":[1,2]}`, true},
		{"escaped name", form, "p%61yload=%7B%7D", "{}", true},
		{"lowercase escapes", form, "payload=%7b%7d", "{}", true},
		{"empty payload", form, "payload=", "", true},
		{"a second = in the value", form, "payload=a=b", "a=b", true},
		{"json", "application/json", "payload=%7B%7D", "", false},
		{"no content type", "", "payload=%7B%7D", "", false},
		{"multipart", "multipart/form-data", "payload=%7B%7D", "", false},
		{"another field", form, "data=%7B%7D", "", false},
		{"a second field", form, "payload=%7B%7D&x=1", "", false},
		{"a trailing &", form, "payload=%7B%7D&", "", false},
		{"payload twice", form, "payload=1&payload=2", "", false},
		{"no =", form, "payload", "", false},
		{"empty body", form, "", "", false},
		{"name in capitals", form, "Payload=%7B%7D", "", false},
		{"name with a space", form, "payload+=%7B%7D", "", false},
		{"bad escape", form, "payload=%7G", "", false},
		{"short escape", form, "payload=%7", "", false},
		{"bad escape in the name", form, "payload%=1", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("kept:")
			got, ok := FormPayload(dst, []byte(tt.contentType), []byte(tt.body))
			if ok != tt.ok || string(got[:5]) != "kept:" || (ok && string(got[5:]) != tt.want) || (!ok && len(got) != 5) {
				t.Fatalf("FormPayload = %q, %v; want kept:%q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
