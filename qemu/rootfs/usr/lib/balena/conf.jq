# conf.jq: what each config.json unit makes of its keys (/var/volatile/<unit>.json), as
# text: unit_output($unit), run on that unit's keys object, its outputs one per line
# (`jq -r`). os-config-json runs it for every unit in its one jq run and keeps the result
# beside each unit's keys (/run/balena/conf/<unit>); apply-conf reads that instead of
# starting jq again when it matches the keys (jq takes a second or more under emulation).
def conf_list:
	if type == "array" then .[] | tostring else tostring | split("[\\s,]+"; null)[] end
	| select(length > 0);
def conf_true: . == true or . == "true";
def unit_output($u):
	if $u == "balena-hostname" then
		"cfg=\(.hostname // "" | tostring | @sh) uuid=\(.uuid // "" | tostring | @sh)"
	elif $u == "development-features" then
		if (.developmentMode | conf_true) then 1 else 0 end
	elif $u == "balena-net-config" then
		# Missing or null: 8.8.8.8; the string "null": none.
		if (has("dnsServers") | not) or .dnsServers == null then "server=8.8.8.8"
		elif .dnsServers == "null" then empty
		else .dnsServers | conf_list | "server=\(.)" end
	elif $u == "balena-ntp-config" then
		.ntpServers // [] | conf_list | "server \(.) iburst"
	elif $u == "os-networkmanager" then
		.["os.network.connectivity"] as $c | .["os.network.wifi.randomMacAddressScan"] as $r
		| (if ($c | type) == "object" and ($c | length) > 0 then
			"[connectivity]", ($c | to_entries[] | select(.value != null) | "\(.key)=\(.value)"), "" else empty end),
		  (if $r != null then "[device]", "wifi.scan-rand-mac-address=\(if ($r | conf_true) then "yes" else "no" end)" else empty end)
	elif $u == "os-sshkeys" then
		.["os.sshKeys"] // [] | if type == "array" then .[] else tostring end | tostring | select(length > 0)
	elif $u == "os-udevrules" then
		.["os.udevRules"] // {} | if type == "object" then to_entries[] else empty end
		| "\(.key)\t\(.value | tostring | if endswith("\n") then . else . + "\n" end | @base64)"
	elif $u == "balena-persistent-logs" then
		if (.persistentLogging | conf_true) then 1 else 0 end
	else error("unknown unit \($u)") end;
# The text `jq -r 'unit_output($u)'` prints.
def unit_text($u): [unit_output($u) | tostring | . + "\n"] | add // "";
