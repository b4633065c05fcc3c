tcpdump -i lo --immediate-mode -U -w nova-api-eventlet.pcap 'tcp port 5672 or tcp port 8774'
then: tcpdump -r nova-api-eventlet.pcap -w nova-api-eventlet.pcap 'tcp port 8774 or (tcp port 5672 and tcp port 41676) or (tcp port 5672 and tcp port 46756)' (the simulator's own connections; other users of the shared broker left out)
