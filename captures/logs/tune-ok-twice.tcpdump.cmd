tcpdump --immediate-mode -U -i lo  -w tune-ok-twice.pcap tcp port 5672 and tcp port 41001
