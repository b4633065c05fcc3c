tcpdump --immediate-mode -U -i lo  -w late-heartbeats.pcap tcp port 5672
tcpdump -r late-heartbeats.pcap -w late-heartbeats.pcap 'tcp port 58254'   # after recording
