tcpdump --immediate-mode -U -i lo -B 16384 -w broker-blocked.pcap tcp port 5672
tcpdump -r broker-blocked.pcap -w broker-blocked.pcap 'tcp port 34232'   # after recording
