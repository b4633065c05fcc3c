tcpdump --immediate-mode -U -i lo -s 80 -w small-snaplen.pcap tcp port 5672
