tcpdump --immediate-mode -U -i hbs-h -w haproxy-idle-hb0.client.pcap tcp port 5672
tcpdump --immediate-mode -U -i lo -w haproxy-idle-hb0.broker.pcap tcp port 5672 and host 127.0.0.2
