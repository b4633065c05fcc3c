tcpdump --immediate-mode -U -i lo -B 16384 -w consumer-zero-window.pcap tcp port 5672 and not tcp port 60250
tcpdump -r consumer-zero-window.pcap -w consumer-zero-window.pcap 'tcp port 60258'   # after recording
